using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// Parses a safetensors JSON header with <see cref="Utf8JsonReader"/> (not <see cref="JsonDocument"/>, which
    /// silently accepts duplicate keys) and checks every entry against the data section.
    /// </summary>
    internal static class SafetensorsHeaderParser
    {
        private const string MetadataKey = "__metadata__";

        /// <summary>Parses and validates <paramref name="json"/>.</summary>
        /// <param name="json">The header bytes (after the 8-byte length).</param>
        /// <param name="fileLength">The whole file's length: 8 + header + data section.</param>
        /// <param name="path">The file path, for messages.</param>
        /// <exception cref="SafetensorsFormatException">Anything does not fit.</exception>
        internal static SafetensorsHeader Parse(ReadOnlySpan<byte> json, long fileLength, string path)
        {
            long dataLength = fileLength - 8 - json.Length;
            var entries = new List<SafetensorsEntry>();
            var keys = new HashSet<string>(StringComparer.Ordinal);
            IReadOnlyDictionary<string, string>? metadata = null;
            try
            {
                var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
                if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                    throw Fail(path, null, $"the header is not a JSON object (it starts with {Describe(ref reader)})");

                while (Next(ref reader) == JsonTokenType.PropertyName)
                {
                    string key = reader.GetString()!;
                    if (!keys.Add(key))
                        throw Fail(path, key, $"the header lists key '{key}' twice");
                    Next(ref reader);
                    if (key == MetadataKey)
                        metadata = ParseMetadata(ref reader, path);
                    else
                        entries.Add(ParseEntry(ref reader, key, dataLength, path));
                }
                // Only whitespace may follow the object (safetensors pads the header with spaces); anything else
                // makes the reader throw.
                if (reader.Read())
                    throw Fail(path, null, $"the header holds {Describe(ref reader)} after its JSON object");
            }
            catch (JsonException ex)
            {
                throw new SafetensorsFormatException(path, null, $"the header is not valid JSON: {ex.Message}", ex);
            }
            catch (InvalidOperationException ex)
            {
                // Utf8JsonReader.GetString reports a string that is not valid UTF-8 this way.
                throw new SafetensorsFormatException(path, null, $"the header is not valid UTF-8 JSON: {ex.Message}", ex);
            }

            CheckTiling(entries, dataLength, path);
            return new SafetensorsHeader(
                entries.AsReadOnly(), metadata ?? ReadOnlyDictionary<string, string>.Empty, json.Length, fileLength);
        }

        private static IReadOnlyDictionary<string, string> ParseMetadata(ref Utf8JsonReader reader, string path)
        {
            var metadata = new OrderedDictionary<string, string>(StringComparer.Ordinal);
            // The Rust crate declares the map optional, so an explicit null means none.
            if (reader.TokenType == JsonTokenType.Null) return new ReadOnlyDictionary<string, string>(metadata);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw Fail(path, null, $"'{MetadataKey}' is {Describe(ref reader)}, not an object of strings");
            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                string key = reader.GetString()!;
                Next(ref reader);
                if (reader.TokenType != JsonTokenType.String)
                    throw Fail(path, null, $"'{MetadataKey}' value of '{key}' is {Describe(ref reader)}, not a string");
                if (!metadata.TryAdd(key, reader.GetString()!))
                    throw Fail(path, null, $"'{MetadataKey}' lists key '{key}' twice");
            }
            return new ReadOnlyDictionary<string, string>(metadata);
        }

        private static SafetensorsEntry ParseEntry(ref Utf8JsonReader reader, string key, long dataLength, string path)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
                throw Fail(path, key, $"tensor '{key}' is described by {Describe(ref reader)}, not an object");
            string? dtypeName = null;
            long[]? shape = null;
            long[]? offsets = null;
            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                string field = reader.GetString()!;
                Next(ref reader);
                switch (field)
                {
                    case "dtype":
                        if (dtypeName is not null) throw Fail(path, key, $"tensor '{key}' has two 'dtype' fields");
                        if (reader.TokenType != JsonTokenType.String)
                            throw Fail(path, key, $"tensor '{key}' has a dtype that is {Describe(ref reader)}, not a string");
                        dtypeName = reader.GetString()!;
                        break;
                    case "shape":
                        if (shape is not null) throw Fail(path, key, $"tensor '{key}' has two 'shape' fields");
                        shape = ReadCounts(ref reader, key, "shape", path);
                        break;
                    case "data_offsets":
                        if (offsets is not null) throw Fail(path, key, $"tensor '{key}' has two 'data_offsets' fields");
                        offsets = ReadCounts(ref reader, key, "data_offsets", path);
                        break;
                    default:
                        // The Rust reader ignores fields it does not know; so do we.
                        reader.Skip();
                        break;
                }
            }

            if (dtypeName is null) throw Fail(path, key, $"tensor '{key}' has no 'dtype'");
            if (shape is null) throw Fail(path, key, $"tensor '{key}' has no 'shape'");
            if (offsets is null) throw Fail(path, key, $"tensor '{key}' has no 'data_offsets'");
            if (!SafetensorsDTypes.TryFromName(dtypeName, out SafetensorsDType? dtype))
                throw Fail(path, key, $"tensor '{key}' has dtype '{dtypeName}', which is not one of {SafetensorsDTypes.SupportedNames}");
            if (offsets.Length != 2)
                throw Fail(path, key, $"tensor '{key}' has {offsets.Length} data_offsets, not 2 ([begin, end])");

            var entry = new SafetensorsEntry(key, dtypeName, shape, offsets[0], offsets[1]);
            CheckEntry(entry, dtype.Value, dataLength, path);
            return entry;
        }

        /// <summary>Checks one entry's sizes and range; the header parser and the tests share it.</summary>
        internal static void CheckEntry(SafetensorsEntry entry, SafetensorsDType dtype, long dataLength, string path)
        {
            string key = entry.Name;
            string shapeText = FormatShape(entry.Shape);
            if (entry.Begin > entry.End)
                throw Fail(path, key, $"tensor '{key}' has data_offsets [{entry.Begin}, {entry.End}] whose begin is past its end");

            long bytes = ByteLength(entry.Shape, dtype.Size)
                ?? throw Fail(path, key, $"tensor '{key}' declares shape {shapeText} of {dtype.Name}, whose size overflows 64 bits");
            if (entry.End - entry.Begin != bytes)
                throw Fail(path, key,
                    $"tensor '{key}' declares shape {shapeText} of {dtype.Name} ({bytes} bytes) but data_offsets span {entry.End - entry.Begin} bytes");
            if (entry.End > dataLength)
                throw Fail(path, key,
                    $"tensor '{key}' has data_offsets [{entry.Begin}, {entry.End}] beyond the data section's {dataLength} bytes");
        }

        /// <summary>
        /// The tensor's byte size, or null when it overflows. Zero dimensions are counted as one as well, because
        /// libtorch computes strides from them and fails on <c>[0, 2^62, 2^62]</c> although it holds no element.
        /// </summary>
        private static long? ByteLength(long[] shape, int elementSize)
        {
            try
            {
                long count = 1;
                long strideBytes = elementSize; // only its overflow matters
                foreach (long d in shape)
                {
                    count = checked(count * d);
                    strideBytes = checked(strideBytes * Math.Max(d, 1));
                }
                return count * elementSize; // count ≤ strideBytes / elementSize, so this cannot overflow
            }
            catch (OverflowException)
            {
                return null;
            }
        }

        /// <summary>
        /// The safetensors crate's rule: the tensors' byte ranges, sorted by (begin, end), tile the data section
        /// exactly, from 0 to its last byte, with no gap, no overlap and nothing after the last tensor. An empty tensor
        /// counts too: it must sit where the tensors before it end. Without this a file with bytes inserted before the
        /// data, or a header length that cuts a padding space, loads with every tensor shifted.
        /// </summary>
        private static void CheckTiling(List<SafetensorsEntry> entries, long dataLength, string path)
        {
            var ranges = new List<SafetensorsEntry>(entries);
            ranges.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            long covered = 0;
            SafetensorsEntry? prev = null;
            foreach (SafetensorsEntry cur in ranges)
            {
                if (cur.Begin < covered)
                    throw Fail(path, cur.Name,
                        $"tensor '{cur.Name}' data_offsets [{cur.Begin}, {cur.End}] overlap tensor '{prev!.Name}' [{prev.Begin}, {prev.End}]");
                if (cur.Begin > covered)
                    throw Fail(path, cur.Name, covered == 0
                        ? $"tensor '{cur.Name}' data_offsets [{cur.Begin}, {cur.End}] leave the data section's first {cur.Begin} bytes unused; safetensors allows no gap"
                        : $"tensor '{cur.Name}' data_offsets [{cur.Begin}, {cur.End}] leave a gap of {cur.Begin - covered} bytes after tensor '{prev!.Name}' [{prev.Begin}, {prev.End}]; safetensors allows no gap");
                covered = cur.End;
                prev = cur;
            }
            if (covered != dataLength)
                throw Fail(path, null,
                    $"the tensors' data_offsets end at byte {covered} but the data section holds {dataLength} bytes "
                    + "(file length - 8 - header length); safetensors allows no byte after the last tensor, so the header length "
                    + "or the data section is wrong");
        }

        /// <summary>Reads a JSON array of non-negative 64-bit integers (a shape or the data offsets).</summary>
        private static long[] ReadCounts(ref Utf8JsonReader reader, string key, string field, string path)
        {
            if (reader.TokenType != JsonTokenType.StartArray)
                throw Fail(path, key, $"tensor '{key}' has a {field} that is {Describe(ref reader)}, not an array of integers");
            var values = new List<long>();
            while (Next(ref reader) != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.Number)
                    throw Fail(path, key, $"tensor '{key}' has a {field} holding {Describe(ref reader)}, not an integer");
                if (!reader.TryGetInt64(out long value))
                    throw Fail(path, key, $"tensor '{key}' has {field} value {Raw(ref reader)}, which is not a 64-bit integer");
                if (value < 0)
                    throw Fail(path, key, field == "shape"
                        ? $"tensor '{key}' has negative dimension {value} in its shape"
                        : $"tensor '{key}' has negative data_offsets value {value}");
                values.Add(value);
            }
            return values.ToArray();
        }

        /// <summary>Advances to the next token; the whole header is in one buffer, so running out means truncated JSON.</summary>
        private static JsonTokenType Next(ref Utf8JsonReader reader)
        {
            if (!reader.Read()) throw new JsonException("the JSON ends early");
            return reader.TokenType;
        }

        private static string Describe(ref Utf8JsonReader reader) => reader.TokenType switch
        {
            JsonTokenType.StartObject => "an object",
            JsonTokenType.StartArray => "an array",
            JsonTokenType.String => $"the string \"{Shorten(reader.GetString()!)}\"",
            JsonTokenType.Number => $"the number {Raw(ref reader)}",
            JsonTokenType.True => "true",
            JsonTokenType.False => "false",
            JsonTokenType.Null => "null",
            JsonTokenType.None => "nothing",
            var other => other.ToString(),
        };

        private static string Raw(ref Utf8JsonReader reader) => Shorten(Encoding.UTF8.GetString(reader.ValueSpan));

        // A hostile header may hold a 100 MB string; a message needs its start only.
        private static string Shorten(string text) => text.Length <= 80 ? text : text[..80] + "...";

        internal static string FormatShape(long[] shape) =>
            "[" + string.Join(", ", Array.ConvertAll(shape, d => d.ToString(CultureInfo.InvariantCulture))) + "]";

        private static SafetensorsFormatException Fail(string path, string? key, string detail) => new(path, key, detail);
    }
}
