// Issue 16: .NET's view of mqsec. The calls and layouts are System.Messaging's (Interop.cs); what
// is checked is MSMQ's documented behaviour, seen through UTF-16: format and path names, labels
// outside the BMP (surrogate pairs) counted in UTF-16 units, *_LEN values, buffers too small,
// bad handles, peek, cursors, lookup ids, authentication on the token.
//   mono mqrt_tests.exe tests SID                  every test below (SID: the enrolled user's)
//   mono mqrt_tests.exe send-auth PATH LABEL_HEX   create PATH (authenticated) and send one signed
//                                                  message with the label (UTF-8 hex)
//   mono mqrt_tests.exe receive-label PATH LABEL_HEX  receive one message and check its label
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Mqsec.DotnetTests
{
    static class Program
    {
        static int failures;
        static int passed;

        // Grüße, a G clef (U+1D11E) and a grinning face (U+1F600): two surrogate pairs.
        const string NonBmpLabel = "Gr\u00fc\u00dfe \U0001D11E \U0001F600";

        // The string's UTF-16 units as they are, with a NUL (Encoding.Unicode would replace an
        // unpaired surrogate with U+FFFD; the marshaller and System.Messaging do not).
        static byte[] Utf16z(string s)
        {
            var b = new byte[(s.Length + 1) * 2];
            Buffer.BlockCopy(s.ToCharArray(), 0, b, 0, s.Length * 2);
            return b;
        }

        // A new, empty queue of its own for each test: .\private$\<name>.
        static string FreshQueue(string name)
        {
            string format;
            CheckHr(CreateQueue(".\\private$\\" + name, name, false, out format), Mq.MQ_OK,
                    "MQCreateQueue " + name);
            return format;
        }

        static void Check(bool ok, string what)
        {
            if (!ok) throw new Exception(what);
        }

        static void CheckHr(int got, int want, string what)
        {
            if (got != want) throw new Exception(what + ": got " + Mq.Hr(got) + ", want " + Mq.Hr(want));
        }

        static void Run(string name, Action test)
        {
            try
            {
                test();
                Console.WriteLine("ok - " + name);
                ++passed;
            }
            catch (Exception e)
            {
                Console.WriteLine("not ok - " + name + ": " + e.Message);
                ++failures;
            }
        }

        // ---- helpers, shaped like System.Messaging's MessageQueue and Message ----

        static int CreateQueue(string path, string label, bool authenticate, out string formatName,
                               int formatCapacity = 256)
        {
            using (var p = new PropertyArray(4))
            {
                p.SetString(Mq.PROPID_Q_PATHNAME, Utf16z(path));
                if (label != null) p.SetString(Mq.PROPID_Q_LABEL, Utf16z(label));
                p.SetUI1(Mq.PROPID_Q_AUTHENTICATE, (byte)(authenticate ? 1 : 0));
                var sb = new StringBuilder(formatCapacity);
                int len = formatCapacity;
                int hr = Native.MQCreateQueue(IntPtr.Zero, p.Lock(), sb, ref len);
                p.Unlock();
                formatName = hr == Mq.MQ_OK ? sb.ToString() : len.ToString();
                return hr;
            }
        }

        static string FormatNameOf(string path)
        {
            var sb = new StringBuilder(256);
            int len = 256;
            int hr = Native.MQPathNameToFormatName(path, sb, ref len);
            CheckHr(hr, Mq.MQ_OK, "MQPathNameToFormatName(" + path + ")");
            Check(len == sb.Length + 1, "the format name's length " + len + " is not its UTF-16 units + 1");
            return sb.ToString();
        }

        static MessageQueueHandle Open(string format, int access)
        {
            MessageQueueHandle h;
            int hr = Native.MQOpenQueue(format, access, Mq.MQ_DENY_NONE, out h);
            CheckHr(hr, Mq.MQ_OK, "MQOpenQueue(" + format + ")");
            return h;
        }

        static int Send(MessageQueueHandle q, byte[] label, byte[] body, int appSpecific,
                        SecurityContextHandle context)
        {
            using (var p = new PropertyArray(8))
            {
                if (label != null) p.SetString(Mq.PROPID_M_LABEL, label);
                p.SetBytes(Mq.PROPID_M_BODY, body);
                p.SetUI4(Mq.PROPID_M_APPSPECIFIC, appSpecific);
                p.SetUI1(Mq.PROPID_M_DELIVERY, 0);
                p.SetUI1(Mq.PROPID_M_PRIORITY, 3);
                if (context != null)
                {
                    p.SetUI4(Mq.PROPID_M_AUTH_LEVEL, Mq.MQMSG_AUTH_LEVEL_ALWAYS);
                    // System.Messaging: (int)securityContext.Handle.DangerousGetHandle()
                    p.SetUI4(Mq.PROPID_M_SECURITY_CONTEXT, (int)context.DangerousGetHandle().ToInt64());
                }
                else
                {
                    p.SetUI4(Mq.PROPID_M_AUTH_LEVEL, Mq.MQMSG_AUTH_LEVEL_NONE);
                }
                int hr = Native.MQSendMessage(q, p.Lock(), IntPtr.Zero);
                p.Unlock();
                return hr;
            }
        }

        static void SendText(MessageQueueHandle q, string label, string body)
        {
            CheckHr(Send(q, Utf16z(label), Encoding.UTF8.GetBytes(body), 0, null), Mq.MQ_OK,
                    "MQSendMessage '" + label + "'");
        }

        // System.Messaging's default read filter (MessagePropertyFilter.SetDefaults, with its
        // default sizes: body 1024 bytes, label 255 units), which includes PROPID_M_LOOKUPID.
        static PropertyArray DefaultReceiveProperties(int bodySize = 1024, int labelUnits = 255)
        {
            var p = new PropertyArray(24);
            p.SetUI2(Mq.PROPID_M_CLASS, 0);
            p.SetUI1(Mq.PROPID_M_ACKNOWLEDGE, 0);
            p.SetBytes(Mq.PROPID_M_MSGID, new byte[20]);
            p.SetBytes(Mq.PROPID_M_CORRELATIONID, new byte[20]);
            p.SetString(Mq.PROPID_M_ADMIN_QUEUE, new byte[255 * 2]);
            p.SetUI4(Mq.PROPID_M_ADMIN_QUEUE_LEN, 255);
            p.SetString(Mq.PROPID_M_RESP_QUEUE, new byte[255 * 2]);
            p.SetUI4(Mq.PROPID_M_RESP_QUEUE_LEN, 255);
            p.SetUI4(Mq.PROPID_M_APPSPECIFIC, 0);
            p.SetUI4(Mq.PROPID_M_ARRIVEDTIME, 0);
            p.SetUI4(Mq.PROPID_M_SENTTIME, 0);
            p.SetBytes(Mq.PROPID_M_BODY, new byte[bodySize]);
            p.SetUI4(Mq.PROPID_M_BODY_SIZE, 0);
            p.SetUI4(Mq.PROPID_M_BODY_TYPE, 0);
            p.SetString(Mq.PROPID_M_LABEL, new byte[labelUnits * 2]);
            p.SetUI4(Mq.PROPID_M_LABEL_LEN, labelUnits);
            p.SetUI8(Mq.PROPID_M_LOOKUPID, 0);
            return p;
        }

        static int Receive(MessageQueueHandle q, int action, CursorHandle cursor, PropertyArray p,
                           uint timeout = 0)
        {
            int hr = Native.MQReceiveMessage(q, timeout, action, p.Lock(), IntPtr.Zero, IntPtr.Zero,
                                             cursor ?? CursorHandle.NullHandle, IntPtr.Zero);
            p.Unlock();
            return hr;
        }

        static int ReceiveByLookupId(MessageQueueHandle q, long id, int action, PropertyArray p)
        {
            int hr = Native.MQReceiveMessageByLookupId(q, id, action, p.Lock(), IntPtr.Zero,
                                                       IntPtr.Zero, IntPtr.Zero);
            p.Unlock();
            return hr;
        }

        static string LabelOf(PropertyArray p) { return p.GetString(Mq.PROPID_M_LABEL, Mq.PROPID_M_LABEL_LEN); }

        static string SidString(byte[] sid)
        {
            var sb = new StringBuilder("S-" + sid[0]);
            long authority = 0;
            for (int i = 2; i < 8; ++i) authority = (authority << 8) | sid[i];
            sb.Append("-" + authority);
            for (int i = 0; i < sid[1]; ++i) sb.Append("-" + BitConverter.ToUInt32(sid, 8 + 4 * i));
            return sb.ToString();
        }

        static string FromHex(string hex)
        {
            var b = new byte[hex.Length / 2];
            for (int i = 0; i < b.Length; ++i) b[i] = Convert.ToByte(hex.Substring(2 * i, 2), 16);
            return Encoding.UTF8.GetString(b);
        }

        // ---- the tests ----

        static void CreateAndFormatNames()
        {
            string format;
            // A buffer too small: the queue is created, the needed length comes back (UTF-16 units).
            CheckHr(CreateQueue(".\\private$\\dotnet-create", NonBmpLabel, false, out format, 5),
                    Mq.MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL, "MQCreateQueue with 5 units");
            int needed = int.Parse(format);
            string real = FormatNameOf(".\\private$\\dotnet-create");
            Check(needed == real.Length + 1, "MQCreateQueue said " + needed + " units for '" + real + "'");
            Check(real.StartsWith("DIRECT=OS:") && real.EndsWith("\\private$\\dotnet-create"),
                  "format name '" + real + "'");
            CheckHr(CreateQueue(".\\private$\\dotnet-create", null, false, out format),
                    Mq.MQ_ERROR_QUEUE_EXISTS, "creating it again");

            var sb = new StringBuilder(8);
            int len = 8;
            CheckHr(Native.MQPathNameToFormatName(".\\private$\\dotnet-create", sb, ref len),
                    Mq.MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, "MQPathNameToFormatName with 8 units");
            Check(len == real.Length + 1, "needed length " + len + ", want " + (real.Length + 1));
            len = 256;
            sb = new StringBuilder(256);
            CheckHr(Native.MQPathNameToFormatName(".\\private$\\dotnet-missing", sb, ref len),
                    Mq.MQ_ERROR_QUEUE_NOT_FOUND, "path of a queue that does not exist");

            // MQHandleToFormatName: the same name, the same needed length when too small.
            using (var q = Open(real, Mq.MQ_SEND_ACCESS))
            {
                len = 4;
                sb = new StringBuilder(4);
                CheckHr(Native.MQHandleToFormatName(q, sb, ref len),
                        Mq.MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, "MQHandleToFormatName, 4 units");
                Check(len == real.Length + 1, "MQHandleToFormatName needed " + len);
                sb = new StringBuilder(len);
                CheckHr(Native.MQHandleToFormatName(q, sb, ref len), Mq.MQ_OK, "MQHandleToFormatName");
                Check(sb.ToString() == real, "MQHandleToFormatName gave '" + sb + "'");
            }
        }

        static void QueueProperties()
        {
            string format = FormatNameOf(".\\private$\\dotnet-create");
            using (var p = new PropertyArray(2))
            {
                p.SetNull(Mq.PROPID_Q_LABEL);
                p.SetNull(Mq.PROPID_Q_PATHNAME);
                CheckHr(Native.MQGetQueueProperties(format, p.Lock()), Mq.MQ_OK, "MQGetQueueProperties");
                p.Unlock();
                Check(p.Vt(Mq.PROPID_Q_LABEL) == Mq.VT_LPWSTR, "PROPID_Q_LABEL is not VT_LPWSTR");
                string label = Marshal.PtrToStringUni(p.Var(Mq.PROPID_Q_LABEL).ptr);
                string path = Marshal.PtrToStringUni(p.Var(Mq.PROPID_Q_PATHNAME).ptr);
                Native.MQFreeMemory(p.Var(Mq.PROPID_Q_LABEL).ptr);
                Native.MQFreeMemory(p.Var(Mq.PROPID_Q_PATHNAME).ptr);
                Check(label == NonBmpLabel, "queue label '" + label + "'");
                Check(path.EndsWith("\\private$\\dotnet-create"), "queue path '" + path + "'");
            }
            // 124 UTF-16 units is the limit: 62 surrogate pairs fit, 63 do not.
            string pairs62 = new StringBuilder().Insert(0, "\U0001F600", 62).ToString();
            foreach (var t in new[] { Tuple.Create(pairs62, Mq.MQ_OK),
                                      Tuple.Create(pairs62 + "\U0001F600", Mq.MQ_ERROR_ILLEGAL_PROPERTY_VALUE),
                                      Tuple.Create("bad \uD800 surrogate", Mq.MQ_ERROR_ILLEGAL_PROPERTY_VALUE) })
            {
                using (var p = new PropertyArray(1))
                {
                    p.SetString(Mq.PROPID_Q_LABEL, Utf16z(t.Item1));
                    CheckHr(Native.MQSetQueueProperties(format, p.Lock()), t.Item2,
                            "MQSetQueueProperties label of " + t.Item1.Length + " units");
                    p.Unlock();
                }
            }
        }

        static void SendAndReceiveDefaultFilter()
        {
            string format = FreshQueue("dotnet-messages");
            using (var sq = Open(format, Mq.MQ_SEND_ACCESS))
            using (var rq = Open(format, Mq.MQ_RECEIVE_ACCESS))
            {
                byte[] body = Encoding.UTF8.GetBytes("<string>hello from C#</string>");
                CheckHr(Send(sq, Utf16z(NonBmpLabel), body, 42, null), Mq.MQ_OK, "MQSendMessage");
                using (var p = DefaultReceiveProperties())
                {
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_OK, "MQReceiveMessage");
                    Check(LabelOf(p) == NonBmpLabel, "label '" + LabelOf(p) + "'");
                    Check(p.GetUI4(Mq.PROPID_M_LABEL_LEN) == NonBmpLabel.Length + 1,
                          "LABEL_LEN " + p.GetUI4(Mq.PROPID_M_LABEL_LEN) + ", want UTF-16 units + 1 = " +
                          (NonBmpLabel.Length + 1));
                    Check(Encoding.UTF8.GetString(p.GetBytes(Mq.PROPID_M_BODY, Mq.PROPID_M_BODY_SIZE)) ==
                          "<string>hello from C#</string>", "body");
                    Check(p.GetUI4(Mq.PROPID_M_APPSPECIFIC) == 42, "APPSPECIFIC");
                    Check(p.Vt(Mq.PROPID_M_LOOKUPID) == Mq.VT_UI8 && p.GetUI8(Mq.PROPID_M_LOOKUPID) != 0,
                          "PROPID_M_LOOKUPID " + p.GetUI8(Mq.PROPID_M_LOOKUPID));
                    Check(p.GetUI4(Mq.PROPID_M_ARRIVEDTIME) != 0 && p.GetUI4(Mq.PROPID_M_SENTTIME) != 0,
                          "sent and arrived times");
                    Check(p.GetUI4(Mq.PROPID_M_RESP_QUEUE_LEN) <= 1, "no response queue");
                    byte[] id = p.GetBytes(Mq.PROPID_M_MSGID, 0);
                    Check(Array.Exists(id, b => b != 0), "message id is zero");
                }
                using (var p = DefaultReceiveProperties())
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_ERROR_IO_TIMEOUT,
                            "receive from the empty queue");
            }
        }

        static void LabelLimitsAndBadText()
        {
            string format = FreshQueue("dotnet-labels");
            using (var q = Open(format, Mq.MQ_SEND_ACCESS))
            {
                string pairs125 = new StringBuilder().Insert(0, "\U0001F600", 125).ToString();
                CheckHr(Send(q, Utf16z(pairs125), new byte[1], 0, null), Mq.MQ_OK, "a label of 250 units");
                CheckHr(Send(q, Utf16z(pairs125 + "x"), new byte[1], 0, null), Mq.MQ_ERROR_LABEL_TOO_LONG,
                        "a label of 251 units");
                CheckHr(Send(q, Utf16z("lone \uDC00 low"), new byte[1], 0, null),
                        Mq.MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "a label with an unpaired low surrogate");
                CheckHr(Send(q, Utf16z("ends high \uD83D"), new byte[1], 0, null),
                        Mq.MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "a label ending in a high surrogate");
            }
            MessageQueueHandle h;
            CheckHr(Native.MQOpenQueue(format + "\uD800", Mq.MQ_SEND_ACCESS, 0, out h),
                    Mq.MQ_ERROR_ILLEGAL_FORMATNAME, "MQOpenQueue of a format name with a lone surrogate");
            h.Dispose();
            var sb = new StringBuilder(256);
            int len = 256;
            CheckHr(Native.MQPathNameToFormatName(".\\private$\\x\uDFFF", sb, ref len),
                    Mq.MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, "MQPathNameToFormatName with a lone surrogate");
            CheckHr(Native.MQDeleteQueue("garbage"), Mq.MQ_ERROR_ILLEGAL_FORMATNAME, "MQDeleteQueue('garbage')");
            // The 250-unit label comes back whole.
            using (var rq = Open(format, Mq.MQ_RECEIVE_ACCESS))
            using (var p = DefaultReceiveProperties())
            {
                CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_OK, "receive the 250-unit label");
                Check(p.GetUI4(Mq.PROPID_M_LABEL_LEN) == 251, "LABEL_LEN " + p.GetUI4(Mq.PROPID_M_LABEL_LEN));
                Check(LabelOf(p) == new StringBuilder().Insert(0, "\U0001F600", 125).ToString(), "label");
            }
        }

        static void BuffersTooSmall()
        {
            string format = FreshQueue("dotnet-buffers");
            using (var sq = Open(format, Mq.MQ_SEND_ACCESS))
            using (var rq = Open(format, Mq.MQ_RECEIVE_ACCESS))
            {
                CheckHr(Send(sq, Utf16z(NonBmpLabel), new byte[2000], 0, null), Mq.MQ_OK, "send");
                // The label needs its UTF-16 units + 1; the message stays in the queue.
                using (var p = DefaultReceiveProperties(4096, 4))
                {
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_ERROR_LABEL_BUFFER_TOO_SMALL,
                            "a label buffer of 4 units");
                    Check(p.GetUI4(Mq.PROPID_M_LABEL_LEN) == NonBmpLabel.Length + 1,
                          "LABEL_LEN " + p.GetUI4(Mq.PROPID_M_LABEL_LEN));
                }
                // One unit short: the NUL needs its place too.
                using (var p = DefaultReceiveProperties(4096, NonBmpLabel.Length))
                    CheckHr(Receive(rq, Mq.MQ_ACTION_PEEK_CURRENT, null, p), Mq.MQ_ERROR_LABEL_BUFFER_TOO_SMALL,
                            "a label buffer one unit short");
                using (var p = DefaultReceiveProperties())
                {
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_ERROR_BUFFER_OVERFLOW,
                            "a body buffer of 1024 bytes for 2000");
                    Check(p.GetUI4(Mq.PROPID_M_BODY_SIZE) == 2000, "BODY_SIZE " + p.GetUI4(Mq.PROPID_M_BODY_SIZE));
                }
                using (var p = DefaultReceiveProperties(2000))
                {
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_OK, "the message was still there");
                    Check(LabelOf(p) == NonBmpLabel, "label after the retries");
                }
            }
        }

        static void PeekCursorAndLookupIds()
        {
            string format = FreshQueue("dotnet-cursor");
            using (var sq = Open(format, Mq.MQ_SEND_ACCESS))
            using (var rq = Open(format, Mq.MQ_RECEIVE_ACCESS))
            {
                foreach (var l in new[] { "m1 \U0001F600", "m2", "m3" }) SendText(sq, l, "body of " + l);
                using (var p = DefaultReceiveProperties())
                {
                    CheckHr(Receive(rq, Mq.MQ_ACTION_PEEK_CURRENT, null, p), Mq.MQ_OK, "peek");
                    Check(LabelOf(p) == "m1 \U0001F600", "peek saw '" + LabelOf(p) + "'");
                }
                CursorHandle cursor;
                CheckHr(Native.MQCreateCursor(rq, out cursor), Mq.MQ_OK, "MQCreateCursor");
                var ids = new List<long>();
                using (cursor)
                {
                    var seen = new List<string>();
                    int action = Mq.MQ_ACTION_PEEK_CURRENT;
                    while (true)
                    {
                        using (var p = DefaultReceiveProperties())
                        {
                            int hr = Receive(rq, action, cursor, p);
                            if (hr == Mq.MQ_ERROR_IO_TIMEOUT) break;
                            CheckHr(hr, Mq.MQ_OK, "cursor walk");
                            seen.Add(LabelOf(p));
                            ids.Add(p.GetUI8(Mq.PROPID_M_LOOKUPID));
                        }
                        action = Mq.MQ_ACTION_PEEK_NEXT;
                    }
                    Check(string.Join(",", seen) == "m1 \U0001F600,m2,m3", "cursor saw " + string.Join(",", seen));
                    Check(ids[0] < ids[1] && ids[1] < ids[2], "lookup ids do not increase");
                }
                using (var p = DefaultReceiveProperties())
                {
                    CheckHr(ReceiveByLookupId(rq, 0, Mq.MQ_LOOKUP_PEEK_LAST, p), Mq.MQ_OK, "PEEK_LAST");
                    Check(LabelOf(p) == "m3" && p.GetUI8(Mq.PROPID_M_LOOKUPID) == ids[2], "PEEK_LAST saw " + LabelOf(p));
                }
                using (var p = DefaultReceiveProperties())
                {
                    CheckHr(ReceiveByLookupId(rq, ids[0], Mq.MQ_LOOKUP_PEEK_NEXT, p), Mq.MQ_OK, "PEEK_NEXT");
                    Check(LabelOf(p) == "m2", "PEEK_NEXT after m1 saw " + LabelOf(p));
                }
                using (var p = DefaultReceiveProperties())
                {
                    CheckHr(ReceiveByLookupId(rq, ids[1], Mq.MQ_LOOKUP_RECEIVE_CURRENT, p), Mq.MQ_OK,
                            "RECEIVE_CURRENT m2");
                    Check(LabelOf(p) == "m2", "RECEIVE_CURRENT took " + LabelOf(p));
                }
                using (var p = DefaultReceiveProperties())
                    CheckHr(ReceiveByLookupId(rq, ids[1], Mq.MQ_LOOKUP_PEEK_CURRENT, p),
                            Mq.MQ_ERROR_MESSAGE_NOT_FOUND, "m2 is gone");
                using (var p = DefaultReceiveProperties())
                    CheckHr(ReceiveByLookupId(rq, 5, Mq.MQ_LOOKUP_PEEK_FIRST, p),
                            Mq.MQ_ERROR_INVALID_PARAMETER, "PEEK_FIRST with a non-zero id");
                foreach (var want in new[] { "m1 \U0001F600", "m3" })
                {
                    using (var p = DefaultReceiveProperties())
                    {
                        CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_OK, "receive " + want);
                        Check(LabelOf(p) == want, "received '" + LabelOf(p) + "', want '" + want + "'");
                    }
                }
            }
        }

        static void BadHandles()
        {
            string format = FreshQueue("dotnet-handles");
            using (var forged = MessageQueueHandle.Forged(0x12345))
            {
                CheckHr(Send(forged, Utf16z("x"), new byte[1], 0, null), Mq.MQ_ERROR_INVALID_HANDLE,
                        "MQSendMessage on a forged handle");
                using (var p = DefaultReceiveProperties())
                    CheckHr(Receive(forged, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_ERROR_INVALID_HANDLE,
                            "MQReceiveMessage on a forged handle");
                CheckHr(Native.MQPurgeQueue(forged), Mq.MQ_ERROR_INVALID_HANDLE, "MQPurgeQueue on a forged handle");
                var sb = new StringBuilder(64);
                int len = 64;
                CheckHr(Native.MQHandleToFormatName(forged, sb, ref len), Mq.MQ_ERROR_INVALID_HANDLE,
                        "MQHandleToFormatName on a forged handle");
            }
            // A handle closed behind the SafeHandle's back (as a double close would leave it).
            var q = Open(format, Mq.MQ_RECEIVE_ACCESS);
            IntPtr raw = q.DangerousGetHandle();
            CheckHr(Native.MQCloseQueue(raw), Mq.MQ_OK, "MQCloseQueue");
            CheckHr(Native.MQCloseQueue(raw), Mq.MQ_ERROR_INVALID_HANDLE, "MQCloseQueue twice");
            using (var p = DefaultReceiveProperties())
                CheckHr(Receive(q, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_ERROR_INVALID_HANDLE,
                        "receive on a closed handle");
            q.SetHandleAsInvalid();
            // A queue handle is not a cursor.
            using (var rq = Open(format, Mq.MQ_RECEIVE_ACCESS))
            {
                CheckHr(Native.MQCloseCursor(rq.DangerousGetHandle()), Mq.MQ_ERROR_INVALID_HANDLE,
                        "MQCloseCursor of a queue handle");
                MessageQueueHandle h;
                CheckHr(Native.MQOpenQueue(format, 0x4444, 0, out h), Mq.MQ_ERROR_INVALID_PARAMETER,
                        "MQOpenQueue with a bad access mode");
                h.Dispose();
            }
        }

        static void AuthenticatedInDotnet(string sid)
        {
            string format;
            CheckHr(CreateQueue(".\\private$\\dotnet-auth", "signed only", true, out format), Mq.MQ_OK,
                    "MQCreateQueue authenticated");
            SecurityContextHandle context;
            CheckHr(Native.MQGetSecurityContextEx(IntPtr.Zero, 0, out context), Mq.MQ_OK,
                    "MQGetSecurityContextEx");
            using (context)
            using (var sq = Open(format, Mq.MQ_SEND_ACCESS))
            using (var rq = Open(format, Mq.MQ_RECEIVE_ACCESS))
            {
                CheckHr(Send(sq, Utf16z("signed " + NonBmpLabel), Encoding.UTF8.GetBytes("signed body"), 7,
                             context), Mq.MQ_OK, "authenticated MQSendMessage");
                // Unsigned messages never reach an authenticated queue.
                CheckHr(Send(sq, Utf16z("unsigned"), Encoding.UTF8.GetBytes("x"), 0, null), Mq.MQ_OK,
                        "unsigned MQSendMessage");
                using (var p = DefaultReceiveProperties())
                {
                    p.SetUI1(Mq.PROPID_M_AUTHENTICATED, 0);
                    p.SetUI1(Mq.PROPID_M_AUTHENTICATED_EX, 0);
                    p.SetBytes(Mq.PROPID_M_SENDERID, new byte[256]);
                    p.SetUI4(Mq.PROPID_M_SENDERID_LEN, 0);
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_OK, "receive the signed message");
                    Check(LabelOf(p) == "signed " + NonBmpLabel, "label '" + LabelOf(p) + "'");
                    Check(p.GetUI1(Mq.PROPID_M_AUTHENTICATED) == 1, "AUTHENTICATED " + p.GetUI1(Mq.PROPID_M_AUTHENTICATED));
                    Check(p.GetUI1(Mq.PROPID_M_AUTHENTICATED_EX) != 0, "AUTHENTICATED_EX is 0");
                    string got = SidString(p.GetBytes(Mq.PROPID_M_SENDERID, Mq.PROPID_M_SENDERID_LEN));
                    Check(got == sid, "sender SID " + got + ", want " + sid);
                }
                using (var p = DefaultReceiveProperties())
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_ERROR_IO_TIMEOUT,
                            "the unsigned message was rejected");
            }
        }

        static void ManagementAndPurge()
        {
            string format = FreshQueue("dotnet-mgmt");
            using (var p = new PropertyArray(1))
            {
                p.SetNull(Mq.PROPID_MGMT_MSMQ_PRIVATEQ);
                CheckHr(Native.MQMgmtGetInfo(null, "MACHINE", p.Lock()), Mq.MQ_OK, "MQMgmtGetInfo MACHINE");
                p.Unlock();
                var v = p.Var(Mq.PROPID_MGMT_MSMQ_PRIVATEQ);
                Check(v.vt == Mq.VT_LPWSTR_VECTOR, "PRIVATEQ vt " + v.vt);
                var names = new List<string>();
                for (int i = 0; i < v.cElems; ++i)
                {
                    IntPtr s = Marshal.ReadIntPtr(v.pElems, i * IntPtr.Size);
                    names.Add(Marshal.PtrToStringUni(s));
                    Native.MQFreeMemory(s);
                }
                Native.MQFreeMemory(v.pElems);
                Check(names.Exists(n => n.EndsWith("\\private$\\dotnet-mgmt")),
                      "private queues: " + string.Join(";", names));
            }
            using (var sq = Open(format, Mq.MQ_SEND_ACCESS))
            {
                SendText(sq, "a", "1");
                SendText(sq, "b", "2");
            }
            using (var p = new PropertyArray(1))
            {
                p.SetNull(Mq.PROPID_MGMT_QUEUE_MESSAGE_COUNT);
                CheckHr(Native.MQMgmtGetInfo(null, "QUEUE=" + format, p.Lock()), Mq.MQ_OK, "MQMgmtGetInfo QUEUE=");
                p.Unlock();
                Check(p.GetUI4(Mq.PROPID_MGMT_QUEUE_MESSAGE_COUNT) == 2,
                      "message count " + p.GetUI4(Mq.PROPID_MGMT_QUEUE_MESSAGE_COUNT));
            }
            using (var rq = Open(format, Mq.MQ_RECEIVE_ACCESS))
            {
                CheckHr(Native.MQPurgeQueue(rq), Mq.MQ_OK, "MQPurgeQueue");
                using (var p = DefaultReceiveProperties())
                    CheckHr(Receive(rq, Mq.MQ_ACTION_RECEIVE, null, p), Mq.MQ_ERROR_IO_TIMEOUT, "purged");
            }
            CheckHr(Native.MQDeleteQueue(FormatNameOf(".\\private$\\dotnet-create")), Mq.MQ_OK, "MQDeleteQueue");
            var sb = new StringBuilder(256);
            int len = 256;
            CheckHr(Native.MQPathNameToFormatName(".\\private$\\dotnet-create", sb, ref len),
                    Mq.MQ_ERROR_QUEUE_NOT_FOUND, "the deleted queue is gone");
        }

        // ---- the commands ----

        static int SendAuth(string path, string label)
        {
            string format;
            int hr = CreateQueue(path, null, true, out format);
            if (hr == Mq.MQ_ERROR_QUEUE_EXISTS) format = FormatNameOf(path);
            else CheckHr(hr, Mq.MQ_OK, "MQCreateQueue " + path);
            SecurityContextHandle context;
            CheckHr(Native.MQGetSecurityContextEx(IntPtr.Zero, 0, out context), Mq.MQ_OK, "MQGetSecurityContextEx");
            using (context)
            using (var q = Open(format, Mq.MQ_SEND_ACCESS))
                CheckHr(Send(q, Utf16z(label), Encoding.UTF8.GetBytes("signed in C#"), 0, context), Mq.MQ_OK,
                        "authenticated MQSendMessage");
            Console.WriteLine("sent a signed message to " + format);
            return 0;
        }

        static int ReceiveLabel(string path, string want)
        {
            using (var q = Open(FormatNameOf(path), Mq.MQ_RECEIVE_ACCESS))
            using (var p = DefaultReceiveProperties())
            {
                CheckHr(Receive(q, Mq.MQ_ACTION_RECEIVE, null, p, 5000), Mq.MQ_OK, "MQReceiveMessage");
                string got = LabelOf(p);
                Check(got == want, "label '" + got + "' (" + got.Length + " units), want '" + want + "' (" +
                      want.Length + " units)");
                Check(p.GetUI4(Mq.PROPID_M_LABEL_LEN) == want.Length + 1, "LABEL_LEN");
                Console.WriteLine("received the C program's message, label intact (" + want.Length +
                                  " UTF-16 units)");
            }
            return 0;
        }

        static int Main(string[] args)
        {
            try
            {
                if (args.Length == 2 && args[0] == "tests")
                {
                    Run("create queue, path and handle to format name, buffers too small", CreateAndFormatNames);
                    Run("queue properties: UTF-16 label outside the BMP, 124-unit limit", QueueProperties);
                    Run("send and receive with System.Messaging's default property set", SendAndReceiveDefaultFilter);
                    Run("label limits in UTF-16 units, unpaired surrogates refused", LabelLimitsAndBadText);
                    Run("label and body buffers too small, needed sizes returned", BuffersTooSmall);
                    Run("peek, cursor walk and lookup ids", PeekCursorAndLookupIds);
                    Run("bad handles", BadHandles);
                    Run("authenticated send and receive with a security context", () => AuthenticatedInDotnet(args[1]));
                    Run("MQMgmtGetInfo, MQPurgeQueue, MQDeleteQueue", ManagementAndPurge);
                    Console.WriteLine(passed + " passed, " + failures + " failed");
                    return failures == 0 ? 0 : 1;
                }
                if (args.Length == 3 && args[0] == "send-auth") return SendAuth(args[1], FromHex(args[2]));
                if (args.Length == 3 && args[0] == "receive-label") return ReceiveLabel(args[1], FromHex(args[2]));
            }
            catch (Exception e)
            {
                Console.WriteLine("FAIL: " + e.Message);
                return 1;
            }
            Console.Error.WriteLine("usage: mqrt_tests.exe tests SID | send-auth PATH LABEL_HEX | receive-label PATH LABEL_HEX");
            return 2;
        }
    }
}
