using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// Writes the header JSON the way the Rust <c>safetensors</c> crate (behind Python's <c>save_file</c>) does:
    /// compact, <c>__metadata__</c> first, then the tensors in data order, strings escaped as serde_json escapes them
    /// (only quotes, backslashes and control characters; other characters as raw UTF-8), padded with spaces to a
    /// multiple of 8 bytes so that the data section starts 8-aligned.
    /// </summary>
    internal static class SafetensorsHeaderJson
    {
        internal static byte[] Build(IReadOnlyList<KeyValuePair<string, string>> metadata, IReadOnlyList<PreparedTensor> tensors)
        {
            var json = new StringBuilder(64 + 96 * tensors.Count);
            json.Append('{');
            if (metadata.Count > 0)
            {
                json.Append("\"__metadata__\":{");
                for (int i = 0; i < metadata.Count; i++)
                {
                    if (i > 0) json.Append(',');
                    AppendString(json, metadata[i].Key);
                    json.Append(':');
                    AppendString(json, metadata[i].Value);
                }
                json.Append('}');
            }
            foreach (PreparedTensor t in tensors)
            {
                if (json.Length > 1) json.Append(',');
                AppendString(json, t.Name);
                json.Append(":{\"dtype\":");
                AppendString(json, t.DType.Name);
                json.Append(",\"shape\":[");
                for (int i = 0; i < t.Shape.Length; i++)
                {
                    if (i > 0) json.Append(',');
                    json.Append(t.Shape[i].ToString(CultureInfo.InvariantCulture));
                }
                json.Append("],\"data_offsets\":[")
                    .Append(t.Begin.ToString(CultureInfo.InvariantCulture)).Append(',')
                    .Append(t.End.ToString(CultureInfo.InvariantCulture)).Append("]}");
            }
            json.Append('}');

            // Every string was checked to be valid UTF-16 by the caller, so this encoding is lossless.
            int length = Encoding.UTF8.GetByteCount(json.ToString());
            byte[] bytes = new byte[(length + 7) & ~7];
            Encoding.UTF8.GetBytes(json.ToString(), bytes);
            bytes.AsSpan(length).Fill((byte)' ');
            return bytes;
        }

        private static void AppendString(StringBuilder json, string value)
        {
            json.Append('"');
            foreach (char c in value)
            {
                switch (c)
                {
                    case '"': json.Append("\\\""); break;
                    case '\\': json.Append("\\\\"); break;
                    case '\b': json.Append("\\b"); break;
                    case '\f': json.Append("\\f"); break;
                    case '\n': json.Append("\\n"); break;
                    case '\r': json.Append("\\r"); break;
                    case '\t': json.Append("\\t"); break;
                    default:
                        if (c < 0x20) json.Append("\\u00").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                        else json.Append(c);
                        break;
                }
            }
            json.Append('"');
        }
    }
}
