using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Text;
using Peft.Runtime.IO;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Peft.Tests.IO;

/// <summary>
/// Seeded mutations of a valid file: each must read or fail with <see cref="SafetensorsFormatException"/>, never any
/// other exception, and never allocate more than the file size justifies.
/// </summary>
public class SafetensorsFuzzTests
{
    private const int Iterations = 30_000;

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
        var random = new Random(20240611);
        int succeeded = 0, rejected = 0;
        var kinds = new int[7];
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < Iterations; i++)
        {
            int kind = random.Next(kinds.Length);
            kinds[kind]++;
            byte[] mutated = Mutate(original, kind, random);
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using SafetensorsFile file = Safetensors.Read(mutated, "fuzz");
                long tensorBytes = file.Tensors.Values.Sum(t => t.numel() * t.ElementSize);
                Assert.True(tensorBytes <= mutated.Length, $"iteration {i}: {tensorBytes} tensor bytes from a {mutated.Length}-byte file");
                succeeded++;
            }
            catch (SafetensorsFormatException ex)
            {
                Assert.StartsWith("fuzz: ", ex.Message);
                rejected++;
            }
            catch (Exception ex)
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
            default: // grow or shrink the data section
            {
                int delta = random.Next(-8, 9);
                byte[] resized = new byte[Math.Max(8, file.Length + delta)];
                Array.Copy(file, resized, Math.Min(file.Length, resized.Length));
                return resized;
            }
        }
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
