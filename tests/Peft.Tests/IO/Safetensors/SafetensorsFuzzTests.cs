using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Text;
using System.Text.Json;
using Peft.Runtime.IO;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Peft.Tests.IO;

/// <summary>
/// Seeded mutations of a valid file: each must read or fail with <see cref="SafetensorsFormatException"/>, never any
/// other exception, and never allocate more than the file size justifies. Which of the two is checked against
/// <see cref="Valid"/>, a predicate written here independently of the reader: a file reads exactly when it holds,
/// and then every tensor holds the bytes its data_offsets name.
/// </summary>
public class SafetensorsFuzzTests
{
    private const int Iterations = 20_000;

    // Fragments that make a JSON header wrong in the ways that matter: types, signs, magnitudes, structure, encoding.
    private static readonly string[] Splices =
    {
        "\"F32\"", "\"BF16\"", "\"BOOL\"", "\"U16\"", "\"F8_E4M3\"", "[", "]", "{", "}", ",", ":", "\"", "null", "true",
        "-1", "0", "1e309", "1.5", "9223372036854775807", "9223372036854775808", "18446744073709551616", "4611686018427387904",
        "\"__metadata__\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "[0,0]", "[]", "\\u0000", "\\ud800", "\u00e9", " ",
    };

    private readonly ITestOutputHelper _output;

    public SafetensorsFuzzTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void MutatedFilesReadOrFailWithAFormatException()
    {
        byte[] original = ValidFile();
        Assert.True(Valid(original));
        var random = new Random(20240611);
        int succeeded = 0, rejected = 0;
        var kinds = new int[10];
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < Iterations; i++)
        {
            int kind = random.Next(kinds.Length);
            kinds[kind]++;
            byte[] mutated = Mutate(original, kind, random);
            bool valid = Valid(mutated);
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using SafetensorsFile file = Safetensors.Read(mutated, "fuzz");
                long tensorBytes = file.Tensors.Values.Sum(t => t.numel() * t.ElementSize);
                Assert.True(tensorBytes <= mutated.Length, $"iteration {i}: {tensorBytes} tensor bytes from a {mutated.Length}-byte file");
                if (!valid)
                    Assert.Fail($"iteration {i} (mutation {kind}) read a file the crate refuses\nfile: {Convert.ToHexString(mutated)}");
                AssertBytesMatch(file, mutated, i);
                succeeded++;
            }
            catch (SafetensorsFormatException ex)
            {
                Assert.StartsWith("fuzz: ", ex.Message);
                if (valid)
                    Assert.Fail($"iteration {i} (mutation {kind}) refused a valid file: {ex.Message}\nfile: {Convert.ToHexString(mutated)}");
                rejected++;
            }
            catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"iteration {i} (mutation {kind}) threw {ex.GetType()}: {ex.Message}\nfile: {Convert.ToHexString(mutated)}");
            }
            // Header bytes, entry objects, an exception's message and stack: small multiples of the file, never more.
            long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            Assert.True(allocated < 256 * 1024 + 64L * mutated.Length, $"iteration {i} allocated {allocated} bytes for a {mutated.Length}-byte file");
        }
        _output.WriteLine($"{Iterations} mutations ({string.Join("/", kinds)}) in {watch.ElapsedMilliseconds} ms: {succeeded} read, {rejected} rejected");
        // Both outcomes must be common, or the mutations test nothing.
        Assert.True(succeeded > Iterations / 50, $"only {succeeded} mutated files read");
        Assert.True(rejected > Iterations / 2, $"only {rejected} mutated files were rejected");
    }

    /// <summary>The predicate is no weaker than the crate on the faults the issue named.</summary>
    [Fact]
    public void ThePredicateRefusesShiftedData()
    {
        byte[] original = ValidFile();
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(original);
        for (int delta = -8; delta <= 8; delta++)
        {
            if (delta == 0) continue;
            byte[] file = (byte[])original.Clone();
            BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)(headerLength + delta));
            Assert.False(Valid(file), $"header length {delta:+0;-0}");
            Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(file, "fuzz").Dispose());
        }
        for (int count = 1; count <= 8; count++)
        {
            byte[] file = InsertBeforeData(original, headerLength, Enumerable.Repeat((byte)' ', count).ToArray());
            Assert.False(Valid(file), $"{count} bytes inserted");
            Assert.Throws<SafetensorsFormatException>(() => Safetensors.Read(file, "fuzz").Dispose());
        }
    }

    private static void AssertBytesMatch(SafetensorsFile file, byte[] bytes, int iteration)
    {
        long dataOffset = 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        foreach (SafetensorsEntry entry in file.Header.Entries)
        {
            using var stream = new System.IO.MemoryStream();
            TensorMemory.WriteFrom(stream, file.Tensors[entry.Name], entry.ByteLength);
            Assert.True(bytes.AsSpan((int)(dataOffset + entry.Begin), (int)entry.ByteLength).SequenceEqual(stream.ToArray()),
                $"iteration {iteration}: tensor '{entry.Name}' does not hold the bytes its data_offsets name");
        }
    }

    private static byte[] ValidFile()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["base_model.model.q.lora_A.weight"] = torch.randn(2, 3),
            ["base_model.model.q.lora_B.weight"] = torch.randn(3, 2).to(ScalarType.BFloat16),
            ["mask"] = torch.tensor(new[] { true, false, true, true, false }),
            ["steps"] = torch.tensor(new long[] { 7, -9 }),
            ["empty"] = torch.empty(0, dtype: ScalarType.Byte),
            ["scale"] = torch.tensor(0.5f).to(ScalarType.Float16),
        };
        return Safetensors.Serialize(tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "fuzz" });
    }

    private static byte[] Mutate(byte[] original, int kind, Random random)
    {
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(original);
        byte[] file = (byte[])original.Clone();
        switch (kind)
        {
            case 0: // flip random bytes anywhere
                for (int n = random.Next(1, 4); n > 0; n--) file[random.Next(file.Length)] = (byte)random.Next(256);
                return file;
            case 1: // flip bytes of the header JSON
                for (int n = random.Next(1, 3); n > 0; n--) file[8 + random.Next(headerLength)] = (byte)random.Next(256);
                return file;
            case 2: // truncate
                return file.AsSpan(0, random.Next(file.Length)).ToArray();
            case 3: // a random header length field: anything, near the truth, or within the file
            {
                ulong value = random.Next(3) switch
                {
                    0 => (ulong)random.NextInt64() * (ulong)random.Next(1, 4),
                    1 => (ulong)(headerLength + random.Next(-16, 17)),
                    _ => (ulong)random.Next(file.Length + 8),
                };
                BinaryPrimitives.WriteUInt64LittleEndian(file, value);
                return file;
            }
            case 4: // change one digit of the header (shapes and offsets)
            {
                string json = Encoding.UTF8.GetString(file, 8, headerLength);
                int[] digits = Enumerable.Range(0, json.Length).Where(i => char.IsAsciiDigit(json[i])).ToArray();
                var edited = new StringBuilder(json);
                edited[digits[random.Next(digits.Length)]] = (char)('0' + random.Next(10));
                return WithHeader(file, headerLength, edited.ToString(), keepLength: true);
            }
            case 5: // splice a JSON fragment over a random stretch of the header
            {
                string json = Encoding.UTF8.GetString(file, 8, headerLength);
                int at = random.Next(json.Length);
                int remove = Math.Min(random.Next(0, 12), json.Length - at);
                string edited = json.Remove(at, remove).Insert(at, Splices[random.Next(Splices.Length)]);
                return WithHeader(file, headerLength, edited, keepLength: random.Next(4) == 0);
            }
            case 6: // grow or shrink the data section
            {
                int delta = random.Next(-8, 9);
                byte[] resized = new byte[Math.Max(8, file.Length + delta)];
                Array.Copy(file, resized, Math.Min(file.Length, resized.Length));
                return resized;
            }
            case 7: // insert bytes between the header and the data (every tensor would shift)
            {
                byte[] inserted = new byte[random.Next(1, 17)];
                if (random.Next(2) == 0) random.NextBytes(inserted);
                else Array.Fill(inserted, (byte)" \t\r\n"[random.Next(4)]);
                return InsertBeforeData(file, headerLength, inserted);
            }
            case 8: // header length off by 1..8 either way (cutting padding, or taking data bytes into the JSON)
            {
                int delta = random.Next(1, 9) * (random.Next(2) == 0 ? -1 : 1);
                BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)(headerLength + delta));
                return file;
            }
            default: // re-pad the JSON with JSON whitespace before and after it: still valid, so it must read
            {
                string json = Encoding.UTF8.GetString(file, 8, headerLength).Trim(' ');
                string padded = Whitespace(random, random.Next(0, 4)) + json + Whitespace(random, random.Next(0, 12));
                return WithHeader(file, headerLength, padded, keepLength: false);
            }
        }
    }

    private static string Whitespace(Random random, int length)
    {
        var text = new StringBuilder(length);
        for (int i = 0; i < length; i++) text.Append(" \t\r\n"[random.Next(4)]);
        return text.ToString();
    }

    private static byte[] InsertBeforeData(byte[] file, int headerLength, byte[] inserted)
    {
        int dataStart = 8 + headerLength;
        return file[..dataStart].Concat(inserted).Concat(file[dataStart..]).ToArray();
    }

    // ---- The oracle: an independent statement of what the reader must accept. ----

    /// <summary>Bytes per element of the dtypes the reader supports (the crate knows more; the reader refuses those).</summary>
    private static readonly Dictionary<string, int> DTypeSizes = new(StringComparer.Ordinal)
    {
        ["F64"] = 8, ["I64"] = 8, ["F32"] = 4, ["I32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1,
    };

    /// <summary>
    /// Whether the safetensors crate would accept the file (its <c>read_metadata</c> and <c>validate</c>), narrowed by
    /// the reader's documented stricter rules: no repeated key or field, only the dtypes TorchSharp has, tensor
    /// descriptions as objects, sizes that fit 64 signed bits even with zero dimensions counted as one, and BOOL
    /// bytes of 0 or 1.
    /// </summary>
    private static bool Valid(byte[] file)
    {
        if (file.Length < 8) return false;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (n > 100_000_000 || n > (ulong)(file.Length - 8)) return false;
        byte[] header = file[8..(8 + (int)n)];
        long dataLength = file.Length - 8 - (long)n;
        try
        {
            _ = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(header);
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
        // serde_json takes no byte order mark.
        if (header.AsSpan().StartsWith(new byte[] { 0xEF, 0xBB, 0xBF })) return false;

        var spans = new List<(long Begin, long End, string DType)>();
        try
        {
            using JsonDocument doc = JsonDocument.Parse(header);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return false;
            var keys = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty tensor in doc.RootElement.EnumerateObject())
            {
                if (!keys.Add(tensor.Name)) return false;
                JsonElement value = tensor.Value;
                if (tensor.Name == "__metadata__")
                {
                    if (value.ValueKind == JsonValueKind.Null) continue;
                    if (value.ValueKind != JsonValueKind.Object) return false;
                    var metadataKeys = new HashSet<string>(StringComparer.Ordinal);
                    foreach (JsonProperty item in value.EnumerateObject())
                    {
                        if (!metadataKeys.Add(item.Name) || item.Value.ValueKind != JsonValueKind.String) return false;
                        _ = item.Value.GetString();
                    }
                    continue;
                }
                if (value.ValueKind != JsonValueKind.Object) return false;
                string? dtype = null;
                long[]? shape = null, offsets = null;
                var fields = new HashSet<string>(StringComparer.Ordinal);
                foreach (JsonProperty field in value.EnumerateObject())
                {
                    if (!fields.Add(field.Name) && field.Name is "dtype" or "shape" or "data_offsets") return false;
                    switch (field.Name)
                    {
                        case "dtype":
                            if (field.Value.ValueKind != JsonValueKind.String) return false;
                            dtype = field.Value.GetString();
                            break;
                        case "shape":
                            shape = Counts(field.Value);
                            if (shape is null) return false;
                            break;
                        case "data_offsets":
                            offsets = Counts(field.Value);
                            if (offsets is null) return false;
                            break;
                    }
                }
                if (dtype is null || shape is null || offsets is not { Length: 2 }) return false;
                if (!DTypeSizes.TryGetValue(dtype, out int size)) return false;
                long count = 1, widest = size;
                foreach (long d in shape)
                {
                    count = checked(count * d);
                    widest = checked(widest * Math.Max(d, 1));
                }
                if (offsets[0] > offsets[1] || offsets[1] - offsets[0] != count * size) return false;
                spans.Add((offsets[0], offsets[1], dtype));
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or OverflowException)
        {
            return false;
        }

        // The crate's tiling rule: sorted by (begin, end), each starts where the last ended, from 0 to the end.
        long covered = 0;
        foreach (var span in spans.OrderBy(s => s.Begin).ThenBy(s => s.End))
        {
            if (span.Begin != covered) return false;
            covered = span.End;
        }
        if (covered != dataLength) return false;

        long dataStart = 8 + (long)n;
        foreach (var span in spans.Where(s => s.DType == "BOOL"))
            for (long at = span.Begin; at < span.End; at++)
                if (file[dataStart + at] > 1) return false;
        return true;
    }

    /// <summary>A JSON array of integers in 0..long.MaxValue, or null (a fraction, an exponent, a sign, too large).</summary>
    private static long[]? Counts(JsonElement element)
    {
        if (element.ValueKind != JsonValueKind.Array) return null;
        var values = new List<long>();
        foreach (JsonElement item in element.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number) return null;
            string raw = item.GetRawText();
            string digits = raw.StartsWith('-') ? raw[1..] : raw;
            if (digits.Length == 0 || !digits.All(char.IsAsciiDigit) || !long.TryParse(raw, out long value) || value < 0) return null;
            values.Add(value);
        }
        return values.ToArray();
    }

    /// <summary>Replaces the header; usually updates the length field so the parser gets past it to the deeper checks.</summary>
    private static byte[] WithHeader(byte[] file, int headerLength, string json, bool keepLength)
    {
        byte[] header = Encoding.UTF8.GetBytes(json);
        byte[] result = new byte[8 + header.Length + (file.Length - 8 - headerLength)];
        BinaryPrimitives.WriteUInt64LittleEndian(result, keepLength ? (ulong)headerLength : (ulong)header.Length);
        header.CopyTo(result, 8);
        Array.Copy(file, 8 + headerLength, result, 8 + header.Length, file.Length - 8 - headerLength);
        return result;
    }
}
