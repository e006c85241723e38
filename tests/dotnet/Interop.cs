// The MSMQ C API as System.Messaging and its ports to modern .NET (MSMQ.Messaging, Msmq.NetCore,
// BusterWood.MSMQ) declare it: DllImport("mqrt.dll") with CharSet.Unicode, MQPROPVARIANT laid out
// by hand with Windows x64 offsets (24 bytes, vt at 0, the union at 8, a vector's element count
// at 8 and its pointer at 16), MQPROPS/MQMSGPROPS as a sequential class, SafeHandle queue,
// cursor and security-context handles, strings as pinned UTF-16 byte arrays whose *_LEN count
// UTF-16 units. Nothing here knows it is talking to mqsec: on Linux, Mono finds
// libmqrt.dll.so on the loader path for "mqrt.dll".
using System;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Mqsec.DotnetTests
{
    [StructLayout(LayoutKind.Explicit, Size = 24)]
    public struct MQPROPVARIANT
    {
        [FieldOffset(0)] public short vt;
        [FieldOffset(2)] public short wReserved1;
        [FieldOffset(4)] public short wReserved2;
        [FieldOffset(6)] public short wReserved3;
        [FieldOffset(8)] public byte bVal;
        [FieldOffset(8)] public short iVal;
        [FieldOffset(8)] public int lVal;
        [FieldOffset(8)] public long hVal;
        [FieldOffset(8)] public IntPtr ptr;
        [FieldOffset(8)] public int cElems;    // CAUB, CALPWSTR: the count
        [FieldOffset(16)] public IntPtr pElems; // and the elements
    }

    [StructLayout(LayoutKind.Sequential)]
    public class MQPROPS
    {
        public int cProp;
        public IntPtr aPropID;
        public IntPtr aPropVar;
        public IntPtr aStatus;
    }

    public class MessageQueueHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public MessageQueueHandle() : base(true) { }
        MessageQueueHandle(bool ownsHandle) : base(ownsHandle) { }
        // A value the runtime never handed out; never closed (it is not ours).
        public static MessageQueueHandle Forged(long value)
        {
            var h = new MessageQueueHandle(false);
            h.SetHandle(new IntPtr(value));
            return h;
        }
        protected override bool ReleaseHandle() { return Native.MQCloseQueue(handle) == 0; }
    }

    public class CursorHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public static readonly CursorHandle NullHandle = new CursorHandle();
        public CursorHandle() : base(true) { }
        protected override bool ReleaseHandle() { return Native.MQCloseCursor(handle) == 0; }
    }

    public class SecurityContextHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public SecurityContextHandle() : base(true) { }
        protected override bool ReleaseHandle()
        {
            Native.MQFreeSecurityContext(handle);
            return true;
        }
    }

    public static class Native
    {
        const string Lib = "mqrt.dll";

        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQCreateQueue(IntPtr securityDescriptor, MQPROPS queueProperties,
                                               StringBuilder formatName, ref int formatNameLength);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQDeleteQueue(string formatName);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQPathNameToFormatName(string pathName, StringBuilder formatName,
                                                        ref int count);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQOpenQueue(string formatName, int access, int shareMode,
                                             out MessageQueueHandle handle);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQCloseQueue(IntPtr handle);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQSendMessage(MessageQueueHandle handle, MQPROPS properties,
                                               IntPtr transaction);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQReceiveMessage(MessageQueueHandle handle, uint timeout, int action,
                                                  MQPROPS properties, IntPtr overlapped,
                                                  IntPtr receiveCallback, CursorHandle cursorHandle,
                                                  IntPtr transaction);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQReceiveMessageByLookupId(MessageQueueHandle handle, long lookupId,
                                                            int action, MQPROPS properties,
                                                            IntPtr overlapped, IntPtr receiveCallback,
                                                            IntPtr transaction);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQCreateCursor(MessageQueueHandle handle, out CursorHandle cursor);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQCloseCursor(IntPtr cursor);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQGetSecurityContextEx(IntPtr certificate, int certificateSize,
                                                        out SecurityContextHandle context);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern void MQFreeSecurityContext(IntPtr context);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQHandleToFormatName(MessageQueueHandle handle,
                                                      StringBuilder formatName, ref int count);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQGetQueueProperties(string formatName, MQPROPS queueProperties);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQSetQueueProperties(string formatName, MQPROPS queueProperties);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQPurgeQueue(MessageQueueHandle handle);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern int MQMgmtGetInfo(string computerName, string objectName,
                                               MQPROPS properties);
        [DllImport(Lib, CharSet = CharSet.Unicode)]
        public static extern void MQFreeMemory(IntPtr memory);
    }

    public static class Mq
    {
        public const short VT_NULL = 1, VT_I2 = 2, VT_UI1 = 17, VT_UI2 = 18, VT_UI4 = 19,
                           VT_UI8 = 21, VT_LPWSTR = 31, VT_VECTOR = 0x1000;
        public const short VT_UI1_VECTOR = VT_UI1 | VT_VECTOR;
        public const short VT_LPWSTR_VECTOR = VT_LPWSTR | VT_VECTOR;

        public const int PROPID_M_CLASS = 1, PROPID_M_MSGID = 2, PROPID_M_CORRELATIONID = 3,
            PROPID_M_PRIORITY = 4, PROPID_M_DELIVERY = 5, PROPID_M_ACKNOWLEDGE = 6,
            PROPID_M_APPSPECIFIC = 8, PROPID_M_BODY = 9, PROPID_M_BODY_SIZE = 10,
            PROPID_M_LABEL = 11, PROPID_M_LABEL_LEN = 12, PROPID_M_RESP_QUEUE = 15,
            PROPID_M_RESP_QUEUE_LEN = 16, PROPID_M_ADMIN_QUEUE = 17, PROPID_M_ADMIN_QUEUE_LEN = 18,
            PROPID_M_SENDERID = 20, PROPID_M_SENDERID_LEN = 21, PROPID_M_AUTH_LEVEL = 24,
            PROPID_M_AUTHENTICATED = 25, PROPID_M_SENTTIME = 31, PROPID_M_ARRIVEDTIME = 32,
            PROPID_M_DEST_QUEUE = 33, PROPID_M_DEST_QUEUE_LEN = 34,
            PROPID_M_SECURITY_CONTEXT = 37, PROPID_M_BODY_TYPE = 42,
            PROPID_M_AUTHENTICATED_EX = 53, PROPID_M_LOOKUPID = 60;
        public const int PROPID_Q_PATHNAME = 103, PROPID_Q_LABEL = 108, PROPID_Q_AUTHENTICATE = 111,
            PROPID_Q_TRANSACTION = 113;
        public const int PROPID_MGMT_MSMQ_PRIVATEQ = 2, PROPID_MGMT_QUEUE_MESSAGE_COUNT = 7,
            PROPID_MGMT_QUEUE_PATHNAME = 1;

        public const int MQ_RECEIVE_ACCESS = 1, MQ_SEND_ACCESS = 2, MQ_PEEK_ACCESS = 0x20;
        public const int MQ_DENY_NONE = 0;
        public const int MQ_ACTION_RECEIVE = 0;
        public const int MQ_ACTION_PEEK_CURRENT = unchecked((int)0x80000000);
        public const int MQ_ACTION_PEEK_NEXT = unchecked((int)0x80000001);
        public const int MQ_LOOKUP_PEEK_CURRENT = 0x40000010, MQ_LOOKUP_PEEK_NEXT = 0x40000011,
            MQ_LOOKUP_PEEK_FIRST = 0x40000014, MQ_LOOKUP_PEEK_LAST = 0x40000018,
            MQ_LOOKUP_RECEIVE_CURRENT = 0x40000020;
        public const int MQMSG_AUTH_LEVEL_NONE = 0, MQMSG_AUTH_LEVEL_ALWAYS = 1;

        public const int MQ_OK = 0;
        public const int MQ_INFORMATION_PROPERTY = 0x400E0001;
        public const int MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL = 0x400E0009;
        public const int MQ_ERROR_QUEUE_NOT_FOUND = unchecked((int)0xC00E0003);
        public const int MQ_ERROR_QUEUE_EXISTS = unchecked((int)0xC00E0005);
        public const int MQ_ERROR_INVALID_PARAMETER = unchecked((int)0xC00E0006);
        public const int MQ_ERROR_INVALID_HANDLE = unchecked((int)0xC00E0007);
        public const int MQ_ERROR_ILLEGAL_QUEUE_PATHNAME = unchecked((int)0xC00E0014);
        public const int MQ_ERROR_ILLEGAL_PROPERTY_VALUE = unchecked((int)0xC00E0018);
        public const int MQ_ERROR_BUFFER_OVERFLOW = unchecked((int)0xC00E001A);
        public const int MQ_ERROR_IO_TIMEOUT = unchecked((int)0xC00E001B);
        public const int MQ_ERROR_ILLEGAL_FORMATNAME = unchecked((int)0xC00E001E);
        public const int MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL = unchecked((int)0xC00E001F);
        public const int MQ_ERROR_LABEL_TOO_LONG = unchecked((int)0xC00E005D);
        public const int MQ_ERROR_LABEL_BUFFER_TOO_SMALL = unchecked((int)0xC00E005E);
        public const int MQ_ERROR_MESSAGE_NOT_FOUND = unchecked((int)0xC00E0088);

        public static string Hr(int hr) { return "0x" + hr.ToString("X8"); }
    }

    // A property array as System.Messaging's MessagePropertyVariants builds it: ids, variants and
    // statuses in pinned managed arrays, buffers (bodies, ids, UTF-16 strings) pinned byte arrays.
    public sealed class PropertyArray : IDisposable
    {
        readonly int[] ids;
        readonly MQPROPVARIANT[] vars;
        readonly int[] status;
        readonly object[] buffers;
        readonly GCHandle[] pins;
        int count;
        GCHandle idPin, varPin, statusPin;
        bool locked;

        public PropertyArray(int capacity)
        {
            ids = new int[capacity];
            vars = new MQPROPVARIANT[capacity];
            status = new int[capacity];
            buffers = new object[capacity];
            pins = new GCHandle[capacity];
        }

        public int Count { get { return count; } }

        int Add(int id, MQPROPVARIANT v, byte[] buffer)
        {
            int i = Index(id);
            if (i < 0) i = count++;
            if (pins[i].IsAllocated) pins[i].Free();
            ids[i] = id;
            buffers[i] = buffer;
            if (buffer != null)
            {
                pins[i] = GCHandle.Alloc(buffer, GCHandleType.Pinned);
                if (v.vt == Mq.VT_UI1_VECTOR)
                    v.pElems = pins[i].AddrOfPinnedObject();
                else
                    v.ptr = pins[i].AddrOfPinnedObject();
            }
            vars[i] = v;
            return i;
        }

        public int Index(int id)
        {
            for (int i = 0; i < count; ++i)
                if (ids[i] == id) return i;
            return -1;
        }

        public void SetNull(int id) { var v = new MQPROPVARIANT(); v.vt = Mq.VT_NULL; Add(id, v, null); }
        public void SetUI1(int id, byte b) { var v = new MQPROPVARIANT(); v.vt = Mq.VT_UI1; v.bVal = b; Add(id, v, null); }
        public void SetUI2(int id, short s) { var v = new MQPROPVARIANT(); v.vt = Mq.VT_UI2; v.iVal = s; Add(id, v, null); }
        public void SetUI4(int id, int n) { var v = new MQPROPVARIANT(); v.vt = Mq.VT_UI4; v.lVal = n; Add(id, v, null); }
        public void SetUI8(int id, long n) { var v = new MQPROPVARIANT(); v.vt = Mq.VT_UI8; v.hVal = n; Add(id, v, null); }
        public void SetRawVt(int id, short vt) { var v = new MQPROPVARIANT(); v.vt = vt; Add(id, v, null); }
        public void SetBytes(int id, byte[] b)
        {
            var v = new MQPROPVARIANT();
            v.vt = Mq.VT_UI1_VECTOR;
            v.cElems = b.Length;
            Add(id, v, b);
        }
        // A VT_LPWSTR: the caller's UTF-16 bytes (NUL-terminated), as System.Messaging passes them.
        public void SetString(int id, byte[] utf16)
        {
            var v = new MQPROPVARIANT();
            v.vt = Mq.VT_LPWSTR;
            Add(id, v, utf16);
        }

        public MQPROPVARIANT Var(int id) { return vars[Index(id)]; }
        public int Status(int id) { return status[Index(id)]; }
        public byte[] Buffer(int id) { return (byte[])buffers[Index(id)]; }
        public byte GetUI1(int id) { return Var(id).bVal; }
        public int GetUI4(int id) { return Var(id).lVal; }
        public long GetUI8(int id) { return Var(id).hVal; }
        public short Vt(int id) { return Var(id).vt; }
        // A received VT_LPWSTR whose length property says how many UTF-16 units (with the NUL).
        public string GetString(int id, int lenId)
        {
            int units = GetUI4(lenId);
            if (units <= 0) return null;
            return Encoding.Unicode.GetString(Buffer(id), 0, (units - 1) * 2);
        }
        public byte[] GetBytes(int id, int sizeId)
        {
            int n = sizeId != 0 ? GetUI4(sizeId) : Var(id).cElems;
            var result = new byte[n];
            Array.Copy(Buffer(id), result, n);
            return result;
        }

        public MQPROPS Lock()
        {
            if (locked) throw new InvalidOperationException("already locked");
            idPin = GCHandle.Alloc(ids, GCHandleType.Pinned);
            varPin = GCHandle.Alloc(vars, GCHandleType.Pinned);
            statusPin = GCHandle.Alloc(status, GCHandleType.Pinned);
            locked = true;
            var p = new MQPROPS();
            p.cProp = count;
            p.aPropID = idPin.AddrOfPinnedObject();
            p.aPropVar = varPin.AddrOfPinnedObject();
            p.aStatus = statusPin.AddrOfPinnedObject();
            return p;
        }

        public void Unlock()
        {
            if (!locked) return;
            idPin.Free();
            varPin.Free();
            statusPin.Free();
            locked = false;
        }

        public void Dispose()
        {
            Unlock();
            for (int i = 0; i < count; ++i)
                if (pins[i].IsAllocated) pins[i].Free();
        }
    }
}
