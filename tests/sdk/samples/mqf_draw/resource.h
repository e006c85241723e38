//{{NO_DEPENDENCIES}}
// Microsoft Developer Studio generated include file.
// Used by mqfdraw.rc
//
#define IDC_CONTINUE                    3
#define IDD_DISDRAW_DIALOG              102
#define IDR_MAINFRAME                   128
#define IDD_LOGIN                       129
#define IDD_DS                          130
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
#define IDC_BUTTON_ADDQUEUE             1013
#define IDC_STATIC_CHOOSE_QUEUE         1017
#define IDC_RADIO_PUBLICQUEUE           1018
#define IDC_RADIO_PRIVATEQUEUE          1020
#define IDC_STATIC_DSFRAME              1022
#define IDC_FRAME_FRIEND                1023
#define IDC_CONNECTION                  1024

// Next default values for new objects
// 
#ifdef APSTUDIO_INVOKED
#ifndef APSTUDIO_READONLY_SYMBOLS
#define _APS_NEXT_RESOURCE_VALUE        131
#define _APS_NEXT_COMMAND_VALUE         32771
#define _APS_NEXT_CONTROL_VALUE         1025
#define _APS_NEXT_SYMED_VALUE           101
#endif
#endif
