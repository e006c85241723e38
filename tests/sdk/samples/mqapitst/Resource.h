//{{NO_DEPENDENCIES}}
// Microsoft Developer Studio generated include file.
// Used by MQApitst.rc
//
#define IDD_ABOUTBOX                    100
#define IDR_MAINFRAME                   128
#define IDR_TESTTYPE                    129
#define IDD_CREATE_QUEUE_DIALOG         130
#define IDD_DELETE_QUEUE_DIALOG         131
#define IDD_OPEN_QUEUE_DIALOG           132
#define IDD_CLOSE_QUEUE_DIALOG          133
#define IDD_SEND_MESSAGE_DIALOG         134
#define IDD_RECEIVE_MESSAGE_DIALOG      135
#define IDD_WAIT_DIALOG                 136
#define IDD_LOCATE_DIALOG               137
#define IDC_QUEUE_PATHNAME              1000
#define IDC_QUEUE_LABEL                 1001
#define IDC_DELETE_QUEUE_COMBO          1003
#define IDC_MQ_PEEK_ACCESS              1007
#define IDC_MQ_SEND_ACCESS              1008
#define IDC_IDC_MQ_RECEIVE_ACCESS       1009
#define IDC_PATHNAME_COMBO              1010
#define IDC_COMBO                       1011
#define IDC_FORMATNAME_COMBO2           1011
#define IDC_ADMIN_COMBO                 1012
#define IDC_MESSAGE_PRIORITY            1013
#define IDC_DELIVERY_EXPRESS_RADIO      1014
#define IDC_DELIVERY_RECOVERABLE_RADIO  1015
#define IDC_ACK_FULL_RADIO              1016
#define IDC_ACK_FULL_REACH_QUEUE_RADIO  1016
#define IDC_ACK_NEG_RADIO               1017
#define IDC_ACK_FULL_RECEIVE_RADIO      1017
#define IDC_ACK_NONE_RADIO              1018
#define IDC_LABEL                       1020
#define IDC_BODY                        1021
#define IDC_TIMEOUT                     1022
#define IDC_TARGET_COMBO                1024
#define IDC_LOCATE_LABEL                1025
#define IDC_JOURNAL                     1026
#define IDC_DEAD_LETTER                 1027
#define IDC_AUTHENTICATED               1029
#define IDC_TIME_TO_BE_RECEIVED         1030
#define IDC_NACK_REACH_QUEUE_RADIO      1031
#define IDC_NACK_RECEIVE_RADIO          1032
#define IDC_TIME_TO_REACH_QUEUE         1033
#define IDC_EDIT1                       1035
#define IDC_RADIO3                      1036
#define IDC_EDT_BODY_SIZE               1037
#define IDC_ENCRYPTED                   1038
#define IDC_RADIO1                      1042
#define IDC_RADIO2                      1043
#define IDC_RADIO4                      1044
#define ID_API_CREATE_QUEUE             32771
#define ID_API_DELETE_QUEUE             32772
#define ID_API_OPEN_QUEUE               32773
#define ID_API_CLOSE_QUEUE              32774
#define ID_API_SEND_MESSAGE             32775
#define ID_API_RECEIVE_MESSAGE          32776
#define ID_API_LOCATE                   32777

// Next default values for new objects
// 
#ifdef APSTUDIO_INVOKED
#ifndef APSTUDIO_READONLY_SYMBOLS
#define _APS_3D_CONTROLS                     1
#define _APS_NEXT_RESOURCE_VALUE        141
#define _APS_NEXT_COMMAND_VALUE         32785
#define _APS_NEXT_CONTROL_VALUE         1043
#define _APS_NEXT_SYMED_VALUE           101
#endif
#endif
