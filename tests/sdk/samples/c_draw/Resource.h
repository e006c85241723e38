// --------------------------------------------------------------------
//
//  Copyright (c) Microsoft Corporation.  All rights reserved
//
// THIS CODE AND INFORMATION IS PROVIDED "AS IS" WITHOUT WARRANTY OF
// ANY KIND, EITHER EXPRESSED OR IMPLIED, INCLUDING BUT NOT LIMITED TO
// THE IMPLIED WARRANTIES OF MERCHANTABILITY AND/OR FITNESS FOR A
// PARTICULAR PURPOSE.
//
// --------------------------------------------------------------------
//
//{{NO_DEPENDENCIES}}
// Microsoft Developer Studio generated include file.
// Used by disdraw.rc
//
#define IDC_CONTINUE                    3
#define IDD_DISDRAW_DIALOG              102
#define IDR_MAINFRAME                   128
#define IDD_LOGIN                       129
#define IDC_EDIT_FRIEND                 1000
#define IDC_BUTTON_ATTACH               1001
#define IDC_RADIO_EXPRESS               1002
#define IDC_RADIO_RECOVERABLE           1003
#define IDC_DRAWAREA_SCRIBLLE           1004
#define IDC_EDIT_LOGIN                  1005
#define IDC_EDIT_FRIEND_COMPUTER        1005
#define IDC_RADIO_DS                    1006
#define IDC_RADIO_WORKGROUP             1007
#define IDC_STATIC_CHOOSE_DS            1009
#define IDC_STATIC_Q_LABEL              1010
#define IDC_STATIC_CHOOSE_MESSAGE       1011
#define IDC_STATIC_C_LABEL              1012

// Next default values for new objects
// 
#ifdef APSTUDIO_INVOKED
#ifndef APSTUDIO_READONLY_SYMBOLS
#define _APS_NEXT_RESOURCE_VALUE        130
#define _APS_NEXT_COMMAND_VALUE         32771
#define _APS_NEXT_CONTROL_VALUE         1013
#define _APS_NEXT_SYMED_VALUE           101
#endif
#endif
