// afxtempl.h: MFC's collection templates, declared as far as the MSMQ SDK samples use them (see
// afxwin.h).
#ifndef MQSEC_SDK_SHIM_AFXTEMPL_H
#define MQSEC_SDK_SHIM_AFXTEMPL_H
#include "afxwin.h"

typedef struct __POSITION* POSITION;
template <class TYPE, class ARG_TYPE>
class CList : public CObject {
 public:
  POSITION AddHead(ARG_TYPE e);
  POSITION AddTail(ARG_TYPE e);
  POSITION GetHeadPosition() const;
  POSITION GetTailPosition() const;
  TYPE& GetNext(POSITION& pos);
  TYPE& GetPrev(POSITION& pos);
  TYPE& GetHead();
  TYPE& GetTail();
  TYPE RemoveHead();
  TYPE RemoveTail();
  void RemoveAll();
  void RemoveAt(POSITION pos);
  int GetCount() const;
  BOOL IsEmpty() const;
};
template <class TYPE, class ARG_TYPE>
class CArray : public CObject {
 public:
  int GetSize() const;
  int Add(ARG_TYPE e);
  TYPE& operator[](int i);
  void RemoveAt(int i, int n = 1);
  void RemoveAll();
};
#endif
