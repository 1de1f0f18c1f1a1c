using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Peft.Runtime.IO;
using Xunit;

namespace Peft.Tests.IO;

/// <summary>One malformed file per rule: each gives a <see cref="SafetensorsFormatException"/> naming the file and the fault.</summary>
public sealed class SafetensorsMalformedTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void TruncatedHeaderLength() =>
        Rejects(new byte[] { 16, 0, 0, 0, 0 }, "5 bytes, fewer than the 8-byte header length");

    [Fact]
    public void HeaderLengthLargerThanFile() =>
        Rejects(File(1000, "{}", 30), "header length is 1000 bytes but only 32 bytes follow");

    [Fact]
    public void HeaderLengthBelowTwo() => Rejects(File(1, "{", 0), "less than the 2");

    [Fact]
    public void HeaderLengthAboveTheLimit() => Rejects(File(100_000_001, "{}", 0), "above the limit of 100000000");

    [Fact]
    public void HeaderLengthOfAllOnes() => Rejects(File(ulong.MaxValue, "{}", 0), "18446744073709551615 bytes");

    [Fact]
    public void InvalidJson() => Rejects(Header("{\"a\":{\"dtype\":\"F32\",", 0), "not valid JSON");

    [Fact]
    public void InvalidUtf8() =>
        Rejects(File(null, "{\"a\xff\":1}", 0, latin1: true), "not valid");

    [Fact]
    public void NonObjectJson() => Rejects(Header("[1, 2]", 0), "not a JSON object (it starts with an array)");

    [Fact]
    public void TrailingContent() => Rejects(Header("{} {}", 0), "not valid JSON");

    [Fact]
    public void UnknownDType() =>
        Rejects(Header(Entry("w", "U16", "[2]", "[0,4]"), 4), "tensor 'w' has dtype 'U16', which is not one of", "w");

    [Fact]
    public void NegativeDimension() =>
        Rejects(Header(Entry("w", "F32", "[-1,2]", "[0,8]"), 8), "tensor 'w' has negative dimension -1", "w");

    [Fact]
    public void FractionalDimension() =>
        Rejects(Header(Entry("w", "F32", "[1.5]", "[0,8]"), 8), "shape value 1.5, which is not a 64-bit integer", "w");

    [Fact]
    public void OffsetsReversed() =>
        Rejects(Header(Entry("w", "F32", "[2]", "[8,0]"), 8), "data_offsets [8, 0] whose begin is past its end", "w");

    [Fact]
    public void SizeMismatch() =>
        Rejects(Header(Entry("x.lora_A.weight", "F32", "[8,768]", "[0,100]"), 100),
            "tensor 'x.lora_A.weight' declares shape [8, 768] of F32 (24576 bytes) but data_offsets span 100 bytes", "x.lora_A.weight");

    [Fact]
    public void ShapeOverflow() =>
        Rejects(Header(Entry("w", "F32", "[4294967296,4294967296]", "[0,0]"), 0), "overflows 64 bits", "w");

    [Fact]
    public void EmptyTensorWithHugeDimensions() =>
        Rejects(Header(Entry("w", "F32", "[0,4611686018427387904,4611686018427387904]", "[0,0]"), 0), "overflows 64 bits", "w");

    [Fact]
    public void RangeBeyondTheFile() =>
        Rejects(Header(Entry("w", "F32", "[4]", "[0,16]"), 8), "data_offsets [0, 16] beyond the data section's 8 bytes", "w");

    [Fact]
    public void OverlappingRanges() =>
        Rejects(Header(Entry("a", "F32", "[2]", "[0,8]") + "," + Entry("b", "F32", "[2]", "[4,12]"), 12),
            "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]", "b");

    [Fact]
    public void DuplicateKey() =>
        Rejects(Header(Entry("a", "F32", "[1]", "[0,4]") + "," + Entry("a", "F32", "[1]", "[4,8]"), 8),
            "lists key 'a' twice", "a");

    [Fact]
    public void DuplicateField() =>
        Rejects(Header("\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}", 4), "two 'dtype' fields", "w");

    [Fact]
    public void MissingField() =>
        Rejects(Header("\"w\":{\"dtype\":\"F32\",\"shape\":[1]}", 4), "tensor 'w' has no 'data_offsets'", "w");

    [Fact]
    public void MetadataNonString() =>
        Rejects(Header("\"__metadata__\":{\"format\":1}", 0), "'__metadata__' value of 'format' is the number 1, not a string");

    [Fact]
    public void BooleanBytesOtherThanZeroAndOne()
    {
        byte[] file = Header(Entry("m", "BOOL", "[3]", "[0,3]"), 3);
        file[^1] = 2;
        // The header is fine; only reading the data finds the fault.
        Safetensors.ReadHeader(file, "memory");
        Rejects(file, "tensor 'm' of BOOL holds a byte other than 0 or 1 at element 2", "m", headerOnlyFinds: false);
    }

    [Fact]
    public void EmptyTensorInsideAnother() =>
        Rejects(Header(Entry("a", "F32", "[2]", "[0,8]") + "," + Entry("z", "F32", "[0]", "[4,4]"), 8),
            "tensor 'z' data_offsets [4, 4] overlap tensor 'a' [0, 8]", "z");

    [Fact]
    public void GapBeforeTheFirstTensor() =>
        Rejects(Header(Entry("a", "I8", "[2]", "[4,6]"), 6),
            "tensor 'a' data_offsets [4, 6] leave the data section's first 4 bytes unused", "a");

    [Fact]
    public void GapBetweenTensors() =>
        Rejects(Header(Entry("a", "I8", "[2]", "[0,2]") + "," + Entry("b", "I8", "[2]", "[3,5]"), 5),
            "tensor 'b' data_offsets [3, 5] leave a gap of 1 bytes after tensor 'a' [0, 2]", "b");

    [Fact]
    public void BytesAfterTheLastTensor() =>
        Rejects(Header(Entry("a", "F32", "[2]", "[0,8]"), 9),
            "the tensors' data_offsets end at byte 8 but the data section holds 9 bytes");

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(64)]
    public void BytesInsertedBeforeTheData(int count)
    {
        // Found by mutation fuzzing: every tensor would load shifted by the inserted bytes.
        byte[] valid = Header(Entry("a", "F32", "[2]", "[0,8]") + "," + Entry("b", "I8", "[3]", "[8,11]"), 11);
        int dataStart = valid.Length - 11;
        byte[] file = valid[..dataStart].Concat(new byte[count]).Concat(valid[dataStart..]).ToArray();
        Rejects(file, $"the tensors' data_offsets end at byte 11 but the data section holds {11 + count} bytes");
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(-2)]
    [InlineData(-5)]
    [InlineData(-8)]
    public void HeaderLengthShortOfThePadding(int delta)
    {
        // A header length that cuts padding spaces still leaves valid JSON; the data section grows by as many bytes.
        byte[] file = Header(Entry("a", "F32", "[2]", "[0,8]"), 8, pad: 8);
        ShiftHeaderLength(file, delta);
        Rejects(file, $"the tensors' data_offsets end at byte 8 but the data section holds {8 - delta} bytes");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(8)]
    public void HeaderLengthIntoTheData(int delta)
    {
        // The data section shrinks below the tensor before the parser reaches the data bytes now inside the JSON.
        byte[] file = Header(Entry("a", "F32", "[2]", "[0,8]"), 8, pad: 8);
        ShiftHeaderLength(file, delta);
        Rejects(file, $"tensor 'a' has data_offsets [0, 8] beyond the data section's {8 - delta} bytes", "a");
    }

    [Fact]
    public void HeaderLengthIntoTheDataOfAnEmptyFile()
    {
        // No tensor to trip over: the data bytes taken into the JSON are what is refused.
        byte[] file = Header("", 4);
        ShiftHeaderLength(file, 1);
        Rejects(file, "not valid JSON");
    }

    [Fact]
    public void HeaderLengthIntoDataThatIsWhitespace()
    {
        // The data's first bytes are JSON whitespace, so the longer header still parses; the data section is short.
        byte[] file = Header(Entry("a", "U8", "[4]", "[0,4]"), 4);
        file[^4] = (byte)' ';
        file[^3] = (byte)'\n';
        ShiftHeaderLength(file, 2);
        Rejects(file, "tensor 'a' has data_offsets [0, 4] beyond the data section's 2 bytes", "a");
    }

    [Fact]
    public void NulPaddingAfterTheJson() => Rejects(File(null, "{}\0\0", 0), "not valid JSON");

    [Fact]
    public void ByteOrderMark() => Rejects(File(null, "\uFEFF{}", 0), "not");

    [Fact]
    public void WellFormedEdgeCasesRead()
    {
        // Unknown fields, null metadata, escaped keys, empty tensors at either end, JSON whitespace around the
        // object (the crate allows it before and after): all valid.
        byte[] file = File(null,
            "\t\n {\"__metadata__\":null,\"\\u0061\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2],\"extra\":{\"x\":[1]}},"
            + Entry("z", "F32", "[0]", "[2,2]") + "," + Entry("y", "BOOL", "[0]", "[0,0]") + "}\r \t\n   ", 2);
        using SafetensorsFile read = Safetensors.Read(file, "memory");
        Assert.Equal(new[] { "a", "z", "y" }, read.Tensors.Keys);
        Assert.Empty(read.Metadata);
    }

    private static void ShiftHeaderLength(byte[] file, int delta) =>
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)((long)BinaryPrimitives.ReadUInt64LittleEndian(file) + delta));

    private void Rejects(byte[] file, string fragment, string? key = null, bool headerOnlyFinds = true)
    {
        string path = _folder.File("bad.safetensors");
        System.IO.File.WriteAllBytes(path, file);
        var reads = new List<Action> { () => Safetensors.Read(path).Dispose() };
        if (headerOnlyFinds) reads.Add(() => Safetensors.ReadHeader(path));
        foreach (Action read in reads)
        {
            var ex = Assert.Throws<SafetensorsFormatException>(read);
            Assert.StartsWith(path + ": ", ex.Message);
            Assert.Contains(fragment, ex.Message);
            Assert.Equal(path, ex.FilePath);
            Assert.Equal(key, ex.TensorKey);
            Assert.IsAssignableFrom<IOException>(ex);
        }
    }

    private static string Entry(string name, string dtype, string shape, string offsets) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":{offsets}}}";

    /// <summary>A file whose header is <c>{body}</c> (or <paramref name="body"/> itself when it is not an object's inside).</summary>
    private static byte[] Header(string body, int dataBytes, int pad = 0)
    {
        string json = body.StartsWith('{') || body.StartsWith('[') ? body : "{" + body + "}";
        return File(null, json + new string(' ', pad), dataBytes);
    }

    private static byte[] File(ulong? headerLength, string json, int dataBytes, bool latin1 = false)
    {
        byte[] header = latin1 ? Encoding.Latin1.GetBytes(json) : Encoding.UTF8.GetBytes(json);
        byte[] file = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, headerLength ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        for (int i = 8 + header.Length; i < file.Length; i++) file[i] = (byte)(i % 2);
        return file;
    }
}
