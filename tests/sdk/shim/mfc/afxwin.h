// afxwin.h: MFC declared only as far as the MFC MSMQ SDK samples (c_draw, mqf_draw, mqapitst)
// need to compile their MSMQ code (tests/sdk). Declarations only, nothing is defined: the
// samples are compiled, never linked or run (a GUI is not mqsec's to provide). No MSMQ name.
#ifndef MQSEC_SDK_SHIM_AFXWIN_H
#define MQSEC_SDK_SHIM_AFXWIN_H

#define __AFXWIN_H__  // MFC's guard, which the samples' headers check

#include <tchar.h>
#include <windows.h>

#define __cdecl
#define AFXAPI
#define afx_msg

#include <limits.h>

// ---- Win32 (user32, gdi32, advapi32) types, constants and functions the samples name; declared
// only, like everything here ---------------------------------------------------------------
typedef struct HWND__* HWND;
typedef struct HDC__* HDC;
typedef struct HICON__* HICON;
typedef HICON HCURSOR;
typedef struct HBRUSH__* HBRUSH;
typedef struct HPEN__* HPEN;
typedef struct HINSTANCE__* HINSTANCE;
typedef HINSTANCE HMODULE;
typedef UINT_PTR WPARAM;
typedef LONG_PTR LPARAM;
typedef LONG_PTR LRESULT;
typedef DWORD COLORREF;
typedef intptr_t(WINAPI* FARPROC)();
typedef DWORD(WINAPI* LPTHREAD_START_ROUTINE)(LPVOID);
typedef UINT(__cdecl* AFX_THREADPROC)(LPVOID);
#define TEXT(s) s
#define RGB(r, g, b) \
  ((COLORREF)(((BYTE)(r) | ((WORD)((BYTE)(g)) << 8)) | (((DWORD)(BYTE)(b)) << 16)))
#define WM_ICONERASEBKGND 0x0027
#define SM_CXICON 11
#define SM_CYICON 12
#define SW_HIDE 0
#define SW_SHOW 5
#define IDOK 1
#define IDCANCEL 2
#define IDYES 6
#define IDNO 7
#define MB_OK 0x0
#define MB_YESNO 0x4
#define MB_ICONSTOP 0x10
#define MB_ICONEXCLAMATION 0x30
#define MB_ICONINFORMATION 0x40
#define PS_SOLID 0
#define THREAD_PRIORITY_NORMAL 0
#define WAIT_OBJECT_0 0
#define CP_ACP 0

#define SW_SHOWNORMAL 1
#define VK_BACK 0x08
#define VK_RETURN 0x0D
#define MK_LBUTTON 0x0001
#define COLOR_MENU 4
#define ANSI_VAR_FONT 12
#define DT_TOP 0x0
#define DT_WORDBREAK 0x10
#define RDW_INVALIDATE 0x0001
#define RDW_ERASE 0x0004
#define RDW_UPDATENOW 0x0100
#define VER_PLATFORM_WIN32_NT 2
#define ID_SEPARATOR 0
#define ID_INDICATOR_CAPS 0xE701
#define ID_INDICATOR_NUM 0xE702
#define ID_INDICATOR_SCRL 0xE703
#define WS_CHILD 0x40000000L
#define WS_VISIBLE 0x10000000L
#define WS_OVERLAPPEDWINDOW 0x00CF0000L
#define FWS_ADDTOTITLE 0x00008000L
#define CBRS_TOP 0x1000
#define CBRS_TOOLTIPS 0x0010
#define CBRS_FLYBY 0x8000
#define CBRS_SIZE_DYNAMIC 0x0040
#define CBRS_ALIGN_ANY 0xF000
#define ES_AUTOHSCROLL 0x0080L
#define ES_AUTOVSCROLL 0x0040L
#define ES_MULTILINE 0x0004L
#define ES_READONLY 0x0800L
#define WS_HSCROLL 0x00100000L
#define WS_VSCROLL 0x00200000L
#define EM_SETSEL 0x00B1
#define EM_REPLACESEL 0x00C2
#define EM_LINESCROLL 0x00B6

typedef char* PCHAR;
typedef struct _SID_IDENTIFIER_AUTHORITY {
  BYTE Value[6];
} SID_IDENTIFIER_AUTHORITY, *PSID_IDENTIFIER_AUTHORITY;
typedef struct _SID {
  BYTE Revision;
  BYTE SubAuthorityCount;
  SID_IDENTIFIER_AUTHORITY IdentifierAuthority;
  DWORD SubAuthority[1];
} SID;
typedef PVOID PSID;
typedef enum _SID_NAME_USE {
  SidTypeUser = 1,
  SidTypeGroup,
  SidTypeDomain
} SID_NAME_USE,
    *PSID_NAME_USE;
#define SID_REVISION 1
typedef struct _OSVERSIONINFO {
  DWORD dwOSVersionInfoSize;
  DWORD dwMajorVersion;
  DWORD dwMinorVersion;
  DWORD dwBuildNumber;
  DWORD dwPlatformId;
  CHAR szCSDVersion[128];
} OSVERSIONINFO, *LPOSVERSIONINFO;
typedef struct tagCREATESTRUCT {
  LPVOID lpCreateParams;
  HINSTANCE hInstance;
  void* hMenu;
  HWND hwndParent;
  int cy;
  int cx;
  int y;
  int x;
  LONG style;
  LPCSTR lpszName;
  LPCSTR lpszClass;
  DWORD dwExStyle;
} CREATESTRUCT, *LPCREATESTRUCT;

typedef struct tagPOINT {
  LONG x;
  LONG y;
} POINT;
typedef struct tagRECT {
  LONG left;
  LONG top;
  LONG right;
  LONG bottom;
} RECT, *LPRECT;
typedef const RECT* LPCRECT;
typedef struct tagSIZE {
  LONG cx;
  LONG cy;
} SIZE;

extern "C" {
int WINAPI GetSystemMetrics(int nIndex);
BOOL WINAPI IsIconic(HWND hWnd);
int WINAPI MessageBox(HWND hWnd, LPCSTR lpText, LPCSTR lpCaption, UINT uType);
int WINAPI lstrlen(LPCSTR lpString);
DWORD WINAPI GetSysColor(int nIndex);
BOOL WINAPI GetVersionEx(LPOSVERSIONINFO lpVersionInformation);
BOOL WINAPI GetUserName(LPSTR lpBuffer, LPDWORD pcbBuffer);
BOOL WINAPI LookupAccountSid(LPCSTR lpSystemName, PSID Sid, LPSTR Name, LPDWORD cchName,
                             LPSTR ReferencedDomainName, LPDWORD cchReferencedDomainName,
                             PSID_NAME_USE peUse);
HMODULE WINAPI GetModuleHandle(LPCSTR lpModuleName);
HMODULE WINAPI LoadLibrary(LPCSTR lpLibFileName);
BOOL WINAPI FreeLibrary(HMODULE hLibModule);
FARPROC WINAPI GetProcAddress(HMODULE hModule, LPCSTR lpProcName);
int WINAPI MultiByteToWideChar(UINT CodePage, DWORD dwFlags, LPCSTR lpMultiByteStr, int cbMultiByte,
                               LPWSTR lpWideCharStr, int cchWideChar);
int WINAPI WideCharToMultiByte(UINT CodePage, DWORD dwFlags, LPCWSTR lpWideCharStr, int cchWideChar,
                               LPSTR lpMultiByteStr, int cbMultiByte, LPCSTR lpDefaultChar,
                               LPBOOL lpUsedDefaultChar);
HANDLE WINAPI CreateEvent(void* lpEventAttributes, BOOL bManualReset, BOOL bInitialState,
                          LPCSTR lpName);
BOOL WINAPI SetEvent(HANDLE hEvent);
DWORD WINAPI WaitForSingleObject(HANDLE hHandle, DWORD dwMilliseconds);
BOOL WINAPI CloseHandle(HANDLE hObject);
HANDLE WINAPI CreateThread(void* lpThreadAttributes, SIZE_T dwStackSize,
                           LPTHREAD_START_ROUTINE lpStartAddress, LPVOID lpParameter,
                           DWORD dwCreationFlags, LPDWORD lpThreadId);
}

// ---- MFC ---------------------------------------------------------------------------------
struct CRuntimeClass {
  const char* m_lpszClassName;
};
class CDumpContext;
class CArchive {
 public:
  BOOL IsStoring() const;
  BOOL IsLoading() const;
};
class CObject {
 public:
  virtual ~CObject();
  BOOL IsKindOf(const CRuntimeClass* pClass) const;
  virtual void AssertValid() const;
  virtual void Dump(CDumpContext& dc) const;
  virtual void Serialize(CArchive& ar);
};
#define RUNTIME_CLASS(class_name) (&class_name::class##class_name)
#define DECLARE_DYNAMIC(class_name) \
 public:                            \
  static const CRuntimeClass class##class_name;
#define DECLARE_DYNCREATE(class_name) \
  DECLARE_DYNAMIC(class_name)         \
  static CObject* CreateObject();
#define IMPLEMENT_DYNAMIC(class_name, base_class_name) \
  const CRuntimeClass class_name::class##class_name = {#class_name};
#define IMPLEMENT_DYNCREATE(class_name, base_class_name) \
  IMPLEMENT_DYNAMIC(class_name, base_class_name)         \
  CObject* class_name::CreateObject() { return new class_name; }

class CString {
 public:
  CString();
  CString(const CString& s);
  CString(const char* s);
  CString(const wchar_t* s);
  CString(char c, int n = 1);
  ~CString();
  CString& operator=(const CString& s);
  CString& operator=(const char* s);
  CString& operator=(const wchar_t* s);
  CString& operator=(char c);
  CString& operator+=(const CString& s);
  CString& operator+=(const char* s);
  CString& operator+=(char c);
  operator const char*() const;
  char operator[](int i) const;
  char GetAt(int i) const;
  int GetLength() const;
  BOOL IsEmpty() const;
  void Empty();
  char* GetBuffer(int nMinBufLength);
  void ReleaseBuffer(int nNewLength = -1);
  void Format(const char* format, ...);
  int Compare(const char* s) const;
  int CompareNoCase(const char* s) const;
  int Find(char c) const;
  int Find(const char* s) const;
  CString Left(int n) const;
  CString Right(int n) const;
  CString Mid(int first) const;
  CString Mid(int first, int n) const;
  void MakeUpper();
  void MakeLower();
  void TrimLeft();
  void TrimRight();
  BOOL LoadString(UINT nID);
};
CString operator+(const CString& a, const CString& b);
CString operator+(const CString& a, const char* b);
CString operator+(const char* a, const CString& b);
CString operator+(const CString& a, char b);
bool operator==(const CString& a, const char* b);
bool operator!=(const CString& a, const char* b);
bool operator==(const CString& a, const CString& b);

class CPoint : public tagPOINT {
 public:
  CPoint();
  CPoint(int x, int y);
  CPoint(POINT p);
  BOOL operator==(POINT p) const;
  BOOL operator!=(POINT p) const;
};
class CSize : public tagSIZE {
 public:
  CSize();
  CSize(int cx, int cy);
};
class CRect : public tagRECT {
 public:
  CRect();
  CRect(int l, int t, int r, int b);
  int Width() const;
  int Height() const;
  operator LPRECT();
  BOOL PtInRect(POINT p) const;
};

class CGdiObject : public CObject {};
class CPen : public CGdiObject {
 public:
  CPen();
  CPen(int style, int width, COLORREF color);
  BOOL CreatePen(int style, int width, COLORREF color);
};
class CBrush : public CGdiObject {
 public:
  CBrush();
  CBrush(COLORREF color);
  operator HBRUSH() const;
};
class CWnd;
class CDC : public CObject {
 public:
  HDC GetSafeHdc() const;
  CPen* SelectObject(CPen* pen);
  CBrush* SelectObject(CBrush* brush);
  CPoint MoveTo(int x, int y);
  CPoint MoveTo(POINT p);
  BOOL LineTo(int x, int y);
  BOOL LineTo(POINT p);
  BOOL DrawIcon(int x, int y, HICON hIcon);
  BOOL TextOut(int x, int y, const CString& s);
  COLORREF SetTextColor(COLORREF c);
  COLORREF SetBkColor(COLORREF c);
  void FillRect(LPRECT r, CBrush* brush);
};
class CPaintDC : public CDC {
 public:
  explicit CPaintDC(CWnd* wnd);
};
class CClientDC : public CDC {
 public:
  explicit CClientDC(CWnd* wnd);
};

class CCmdTarget : public CObject {
 public:
  void BeginWaitCursor();
  void EndWaitCursor();
};
class CWaitCursor {
 public:
  CWaitCursor();
  ~CWaitCursor();
  void Restore();
};
class CDataExchange {
 public:
  BOOL m_bSaveAndValidate;
  void Fail();
};

class CWnd : public CCmdTarget {
 public:
  HWND m_hWnd;
  CWnd();
  BOOL IsIconic() const;
  HWND GetSafeHwnd() const;
  LRESULT SendMessage(UINT message, WPARAM wParam = 0, LPARAM lParam = 0);
  BOOL PostMessage(UINT message, WPARAM wParam = 0, LPARAM lParam = 0);
  BOOL ShowWindow(int nCmdShow);
  BOOL EnableWindow(BOOL bEnable = TRUE);
  void SetWindowText(const char* s);
  void GetWindowText(CString& s) const;
  int GetWindowTextLength() const;
  void GetClientRect(LPRECT r) const;
  void GetWindowRect(LPRECT r) const;
  HICON SetIcon(HICON hIcon, BOOL bBigIcon);
  BOOL UpdateData(BOOL bSaveAndValidate = TRUE);
  void Invalidate(BOOL bErase = TRUE);
  void UpdateWindow();
  CWnd* SetFocus();
  CWnd* GetDlgItem(int nID) const;
  CWnd* GetParent() const;
  int MessageBox(const char* text, const char* caption = NULL, UINT type = MB_OK);
  void SetCapture();
  CDC* GetDC();
  int ReleaseDC(CDC* dc);
  virtual BOOL DestroyWindow();
  virtual void DoDataExchange(CDataExchange* pDX);
  void OnPaint();
  void OnClose();
  void OnLButtonDown(UINT nFlags, CPoint point);
  void OnMouseMove(UINT nFlags, CPoint point);
  void OnRButtonUp(UINT nFlags, CPoint point);
  void OnLButtonDblClk(UINT nFlags, CPoint point);
  void OnKeyDown(UINT nChar, UINT nRepCnt, UINT nFlags);
  void OnChar(UINT nChar, UINT nRepCnt, UINT nFlags);
  void OnSetFocus(CWnd* pOldWnd);
  BOOL OnSetCursor(CWnd* pWnd, UINT nHitTest, UINT message);
  void OnTimer(UINT_PTR nIDEvent);
  void OnDestroy();
  UINT_PTR SetTimer(UINT_PTR nIDEvent, UINT nElapse, void* lpfnTimer);
  BOOL KillTimer(UINT_PTR nIDEvent);
  int GetDlgItemText(int nID, CString& s) const;
  void SetDlgItemText(int nID, const char* s);
  BOOL RedrawWindow(LPRECT lpRectUpdate = NULL, void* prgnUpdate = NULL, UINT flags = 0);
  int MessageBox(const char* text, const char* caption, UINT type, int unused);
  virtual BOOL PreCreateWindow(CREATESTRUCT& cs);
  int OnCreate(LPCREATESTRUCT lpCreateStruct);
  BOOL Create(const char* lpszClassName, const char* lpszWindowName, DWORD dwStyle,
              const RECT& rect, CWnd* pParentWnd, UINT nID);
  void SetWindowText(const wchar_t* s);
  void ShowScrollBar(UINT nBar, BOOL bShow = TRUE);
  void SetFont(void* pFont, BOOL bRedraw = TRUE);
};
class CStatic : public CWnd {};
class CButton : public CWnd {
 public:
  int GetCheck() const;
  void SetCheck(int nCheck);
};
class CEdit : public CWnd {
 public:
  BOOL Create(DWORD dwStyle, const RECT& rect, CWnd* pParentWnd, UINT nID);
  int GetLineCount() const;
  int LineIndex(int nLine = -1) const;
  int LineLength(int nLine = -1) const;
  void LineScroll(int nLines, int nChars = 0);
  DWORD GetSel() const;
  void GetSel(int& nStartChar, int& nEndChar) const;
  void Clear();
  void SetSel(int nStartChar, int nEndChar, BOOL bNoScroll = FALSE);
  void ReplaceSel(const char* s, BOOL bCanUndo = FALSE);
  void SetLimitText(UINT nMax);
  void LimitText(int nChars = 0);
};
class CListBox : public CWnd {
 public:
  int AddString(const char* s);
  int GetCount() const;
  int GetCurSel() const;
  int SetCurSel(int n);
  void GetText(int n, CString& s) const;
  int DeleteString(UINT n);
  void ResetContent();
};
class CComboBox : public CWnd {
 public:
  int AddString(const char* s);
  int GetCount() const;
  int GetCurSel() const;
  int SetCurSel(int n);
  void GetLBText(int n, CString& s) const;
  int DeleteString(UINT n);
  void ResetContent();
};
class CDialog : public CWnd {
 public:
  CDialog();
  BOOL Create(UINT nIDTemplate, CWnd* pParentWnd = NULL);
  explicit CDialog(UINT nIDTemplate, CWnd* pParentWnd = NULL);
  virtual INT_PTR DoModal();
  virtual BOOL OnInitDialog();
  virtual void OnOK();
  virtual void OnCancel();
  void EndDialog(int nResult);
};

class CWinThread : public CCmdTarget {
 public:
  HANDLE m_hThread;
};
CWinThread* AfxBeginThread(AFX_THREADPROC pfnThreadProc, LPVOID pParam,
                           int nPriority = THREAD_PRIORITY_NORMAL, UINT nStackSize = 0,
                           DWORD dwCreateFlags = 0, void* lpSecurityAttrs = NULL);
class CDocTemplate;
class CDocument : public CCmdTarget {
 public:
  virtual BOOL OnNewDocument();
  void SetModifiedFlag(BOOL bModified = TRUE);
  BOOL IsModified();
  void UpdateAllViews(void* pSender, LPARAM lHint = 0L, CObject* pHint = NULL);
  void SetTitle(const char* lpszTitle);
};
class CView : public CWnd {
 public:
  CDocument* m_pDocument;
  CDocument* GetDocument() const;
  virtual void OnDraw(CDC* pDC);
  BOOL PreCreateWindow(CREATESTRUCT& cs);
};
class CEditView : public CView {
 public:
  CEdit& GetEditCtrl() const;
  BOOL PreCreateWindow(CREATESTRUCT& cs);
};
class CFrameWnd : public CWnd {
 public:
  BOOL PreCreateWindow(CREATESTRUCT& cs);
  void EnableDocking(DWORD dwDockStyle);
  void DockControlBar(CWnd* pBar, UINT nDockBarID = 0, LPCRECT lpRect = NULL);
  CView* GetActiveView() const;
  CDocument* GetActiveDocument();
  void SetMessageText(const char* lpszText);
};
class CControlBar : public CWnd {
 public:
  void SetBarStyle(DWORD dwStyle);
  DWORD GetBarStyle();
  void EnableDocking(DWORD dwDockStyle);
};
class CToolBar : public CControlBar {
 public:
  BOOL Create(CWnd* pParentWnd, DWORD dwStyle = WS_CHILD | WS_VISIBLE | CBRS_TOP,
              UINT nID = 0xE800);
  BOOL CreateEx(CWnd* pParentWnd, DWORD dwCtrlStyle = 0,
                DWORD dwStyle = WS_CHILD | WS_VISIBLE | CBRS_ALIGN_ANY, CRect rcBorders = CRect(),
                UINT nID = 0xE800);
  BOOL LoadToolBar(UINT nIDResource);
};
class CStatusBar : public CControlBar {
 public:
  BOOL Create(CWnd* pParentWnd, DWORD dwStyle = WS_CHILD | WS_VISIBLE, UINT nID = 0xE801);
  BOOL SetIndicators(const UINT* lpIDArray, int nIDCount);
};
class CDocTemplate : public CCmdTarget {};
class CSingleDocTemplate : public CDocTemplate {
 public:
  CSingleDocTemplate(UINT nIDResource, const CRuntimeClass* pDocClass,
                     const CRuntimeClass* pFrameClass, const CRuntimeClass* pViewClass);
};
class CCommandLineInfo : public CObject {};

class CWinApp : public CWinThread {
 public:
  void AddDocTemplate(CDocTemplate* pTemplate);
  void LoadStdProfileSettings(UINT nMaxMRU = 4);
  void ParseCommandLine(CCommandLineInfo& rCmdInfo);
  BOOL ProcessShellCommand(CCommandLineInfo& rCmdInfo);
  void OnFileNew();
  void OnFileOpen();
  void OnFilePrintSetup();
  CWnd* m_pMainWnd;
  explicit CWinApp(const char* name = NULL);
  virtual BOOL InitInstance();
  HICON LoadIcon(UINT nIDResource) const;
  HCURSOR LoadStandardCursor(const char* name) const;
  void Enable3dControls();
  void Enable3dControlsStatic();
  void SetDialogBkColor(COLORREF bk = 0, COLORREF text = 0);
};
CWinApp* AfxGetApp();
int AfxMessageBox(const char* text, UINT type = MB_OK, UINT help = 0);
int AfxMessageBox(UINT id, UINT type = MB_OK, UINT help = 0);
BOOL AfxOleInit();
void AfxThrowUserException();
#define ASSERT(e) ((void)0)
#define VERIFY(e) ((void)(e))
#define TRACE(...) ((void)0)
#define TRACE0(s) ((void)0)

void AFXAPI DDX_Control(CDataExchange* pDX, int nIDC, CWnd& rControl);
void AFXAPI DDX_Text(CDataExchange* pDX, int nIDC, CString& value);
void AFXAPI DDX_Text(CDataExchange* pDX, int nIDC, int& value);
void AFXAPI DDX_Text(CDataExchange* pDX, int nIDC, UINT& value);
void AFXAPI DDX_Text(CDataExchange* pDX, int nIDC, long& value);
void AFXAPI DDX_Text(CDataExchange* pDX, int nIDC, DWORD& value);
void AFXAPI DDX_Radio(CDataExchange* pDX, int nIDC, int& value);
void AFXAPI DDX_Check(CDataExchange* pDX, int nIDC, int& value);
void AFXAPI DDX_CBString(CDataExchange* pDX, int nIDC, CString& value);
void AFXAPI DDX_LBString(CDataExchange* pDX, int nIDC, CString& value);
void AFXAPI DDV_MaxChars(CDataExchange* pDX, const CString& value, int nChars);
void AFXAPI DDV_MinMaxInt(CDataExchange* pDX, int value, int minVal, int maxVal);
void AFXAPI DDV_MinMaxLong(CDataExchange* pDX, long value, long minVal, long maxVal);
void AFXAPI DDV_MinMaxUInt(CDataExchange* pDX, UINT value, UINT minVal, UINT maxVal);

// Message maps: declared, so that DECLARE/BEGIN/END and the ON_ entries compile.
struct AFX_MSGMAP_ENTRY {
  int unused;
};
struct AFX_MSGMAP {
  const AFX_MSGMAP_ENTRY* entries;
};
#define DECLARE_MESSAGE_MAP() \
 protected:                   \
  static const AFX_MSGMAP* GetThisMessageMap();
#define BEGIN_MESSAGE_MAP(theClass, baseClass)      \
  const AFX_MSGMAP* theClass::GetThisMessageMap() { \
    typedef theClass ThisClass;                     \
    typedef baseClass TheBaseClass;                 \
    static const AFX_MSGMAP_ENTRY _messageEntries[] = {
#define END_MESSAGE_MAP()                                 \
  { 0 }                                                   \
  }                                                       \
  ;                                                       \
  static const AFX_MSGMAP messageMap = {_messageEntries}; \
  return &messageMap;                                     \
  }
#define MQSEC_AFX_ENTRY(...) {0},
#define ON_WM_PAINT() MQSEC_AFX_ENTRY()
#define ON_WM_CLOSE() MQSEC_AFX_ENTRY()
#define ON_WM_DESTROY() MQSEC_AFX_ENTRY()
#define ON_WM_TIMER() MQSEC_AFX_ENTRY()
#define ON_WM_QUERYDRAGICON() MQSEC_AFX_ENTRY()
#define ON_WM_SYSCOMMAND() MQSEC_AFX_ENTRY()
#define ON_WM_LBUTTONDOWN() MQSEC_AFX_ENTRY()
#define ON_WM_LBUTTONDBLCLK() MQSEC_AFX_ENTRY()
#define ON_WM_RBUTTONUP() MQSEC_AFX_ENTRY()
#define ON_WM_MOUSEMOVE() MQSEC_AFX_ENTRY()
#define ON_WM_CTLCOLOR_REFLECT() MQSEC_AFX_ENTRY()
#define ON_WM_KEYDOWN() MQSEC_AFX_ENTRY()
#define ON_WM_CHAR() MQSEC_AFX_ENTRY()
#define ON_WM_SETFOCUS() MQSEC_AFX_ENTRY()
#define ON_WM_SETCURSOR() MQSEC_AFX_ENTRY()
#define ON_WM_CREATE() MQSEC_AFX_ENTRY()
#define ON_WM_SIZE() MQSEC_AFX_ENTRY()
#define ON_BN_CLICKED(id, fn) MQSEC_AFX_ENTRY(&ThisClass::fn)
#define ON_EN_CHANGE(id, fn) MQSEC_AFX_ENTRY(&ThisClass::fn)
#define ON_LBN_SELCHANGE(id, fn) MQSEC_AFX_ENTRY(&ThisClass::fn)
#define ON_CBN_SELCHANGE(id, fn) MQSEC_AFX_ENTRY(&ThisClass::fn)
#define ON_COMMAND(id, fn) MQSEC_AFX_ENTRY(&ThisClass::fn)
#define ON_UPDATE_COMMAND_UI(id, fn) MQSEC_AFX_ENTRY(&ThisClass::fn)
#define ON_MESSAGE(msg, fn) MQSEC_AFX_ENTRY(&ThisClass::fn)

#endif  // MQSEC_SDK_SHIM_AFXWIN_H
