using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Peft.Runtime.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.IO;

public class SafetensorsTests
{
    private static readonly long[][] Shapes = { Array.Empty<long>(), new long[] { 0 }, new long[] { 3, 0, 2 }, new long[] { 5 }, new long[] { 2, 3, 4 } };

    public static TheoryData<string> DTypes => new() { "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL" };

    [Theory]
    [MemberData(nameof(DTypes))]
    public void EveryDTypeRoundTripsBitExactlyInEveryShape(string dtypeName)
    {
        using var scope = torch.NewDisposeScope();
        var generator = new torch.Generator(1234);
        var tensors = new Dictionary<string, Tensor>();
        for (int i = 0; i < Shapes.Length; i++)
            tensors[$"t{i}"] = RandomBits(Shapes[i], ScalarTypeOf(dtypeName), generator);

        using var folder = new TempFolder();
        string path = folder.File("all.safetensors");
        Safetensors.Write(path, tensors);
        using SafetensorsFile file = Safetensors.Read(path);

        Assert.Equal(tensors.Keys.OrderBy(k => k, StringComparer.Ordinal), file.Tensors.Keys);
        foreach ((string key, Tensor expected) in tensors)
        {
            Tensor actual = file.Tensors[key];
            Assert.Equal(expected.dtype, actual.dtype);
            Assert.Equal(expected.shape, actual.shape);
            Assert.Equal(DeviceType.CPU, actual.device_type);
            Assert.Equal(Bytes(expected), Bytes(actual));
            Assert.Equal(dtypeName, file.Header.Entries.Single(e => e.Name == key).DType);
        }
    }

    [Fact]
    public void SpecialFloatBitPatternsSurvive()
    {
        using var scope = torch.NewDisposeScope();
        // Signalling and quiet NaN payloads, both infinities, negative zero, subnormals: raw 16-bit patterns.
        short[] patterns = { 0x7C01, 0x7E00, 0x7FFF, unchecked((short)0xFC00), 0x7C00, unchecked((short)0x8000), 0x0001, 0x7F81, 0x7FC1 };
        using var folder = new TempFolder();
        foreach (ScalarType type in new[] { ScalarType.Float16, ScalarType.BFloat16 })
        {
            Tensor t = FromBytes(MemoryMarshalBytes(patterns), new long[] { patterns.Length }, type);
            string path = folder.File($"{type}.safetensors");
            Safetensors.Write(path, new Dictionary<string, Tensor> { ["x"] = t });
            using SafetensorsFile file = Safetensors.Read(path);
            Assert.Equal(MemoryMarshalBytes(patterns), Bytes(file.Tensors["x"]));
        }
    }

    [Fact]
    public void MetadataRoundTripsAndAbsentMetadataReadsEmpty()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new TempFolder();
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\" \\ \n\t\u0001 < & >", ["empty"] = "" };
        string with = folder.File("with.safetensors");
        Safetensors.Write(with, new Dictionary<string, Tensor> { ["x"] = torch.ones(2) }, metadata);
        Assert.Equal(metadata.OrderBy(p => p.Key, StringComparer.Ordinal), Safetensors.ReadHeader(with).Metadata);

        string without = folder.File("without.safetensors");
        Safetensors.Write(without, new Dictionary<string, Tensor> { ["x"] = torch.ones(2) });
        Assert.Empty(Safetensors.ReadHeader(without).Metadata);
        Assert.DoesNotContain("__metadata__", Encoding.UTF8.GetString(File.ReadAllBytes(without)));
    }

    [Fact]
    public void KeysAreSortedOrdinallyAndHeaderIsPaddedTo8()
    {
        using var scope = torch.NewDisposeScope();
        string[] keys = { "b", "a.lora_B.weight", "a.lora_A.weight", "B", "_x", "a", "é" };
        for (int extra = 0; extra < 8; extra++)
        {
            // Growing one key by a byte at a time walks the header length through every remainder mod 8.
            var tensors = keys.Select((k, i) => new KeyValuePair<string, Tensor>(i == 0 ? k + new string('z', extra) : k, torch.ones(i + 1)));
            byte[] bytes = Safetensors.Serialize(tensors, new Dictionary<string, string> { ["format"] = "pt" });
            long n = BitConverter.ToInt64(bytes, 0);
            Assert.Equal(0, n % 8);
            string json = Encoding.UTF8.GetString(bytes, 8, (int)n);
            Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\"},", json);
            Assert.Equal(json.TrimEnd(' ').Length, json.TrimEnd(' ').LastIndexOf('}') + 1);

            SafetensorsHeader header = Safetensors.ReadHeader(bytes, "memory");
            string[] names = header.Entries.Select(e => e.Name).ToArray();
            Assert.Equal(names.OrderBy(k => k, StringComparer.Ordinal), names);
            // Data is contiguous, in header order, from offset 0 to the end of the file.
            long offset = 0;
            foreach (SafetensorsEntry e in header.Entries)
            {
                Assert.Equal(offset, e.Begin);
                offset = e.End;
            }
            Assert.Equal(bytes.Length, header.DataOffset + offset);
        }
    }

    [Fact]
    public void MixedDTypesAreLaidOutWidestFirstAsTheSafetensorsCrateDoes()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["a_bool"] = torch.ones(3, dtype: ScalarType.Bool),
            ["b_f16"] = torch.ones(3, dtype: ScalarType.Float16),
            ["c_i64"] = torch.ones(3, dtype: ScalarType.Int64),
            ["d_f32"] = torch.ones(3),
            ["e_f32"] = torch.ones(1),
        };
        SafetensorsHeader header = Safetensors.ReadHeader(Safetensors.Serialize(tensors), "memory");
        Assert.Equal(new[] { "c_i64", "d_f32", "e_f32", "b_f16", "a_bool" }, header.Entries.Select(e => e.Name));
        foreach (SafetensorsEntry e in header.Entries)
            Assert.Equal(0, e.Begin % SizeOf(e.DType));
    }

    [Fact]
    public void WrittenBytesMatchTheHandComputedFile()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["ab"] = torch.tensor(new sbyte[] { 1, -1, 127 }),
            ["b"] = torch.tensor(new[] { 1.0f, -2.0f }),
            ["c"] = torch.tensor(1.5f).to(ScalarType.Float16),
        };
        byte[] actual = Safetensors.Serialize(tensors, new Dictionary<string, string> { ["format"] = "pt" });

        // F32 before F16 before I8 (the crate's dtype order), 193 bytes of JSON padded with 7 spaces to 200.
        const string json = "{\"__metadata__\":{\"format\":\"pt\"},"
                            + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            + "\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[8,10]},"
                            + "\"ab\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[10,13]}}"
                            + "       ";
        byte[] expected = new byte[] { 200, 0, 0, 0, 0, 0, 0, 0 }
            .Concat(Encoding.ASCII.GetBytes(json))
            .Concat(new byte[] { 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0 }) // 1.0f, -2.0f
            .Concat(new byte[] { 0x00, 0x3E }) // 1.5 as IEEE half
            .Concat(new byte[] { 0x01, 0xFF, 0x7F })
            .ToArray();
        Assert.Equal(200, Encoding.ASCII.GetByteCount(json));
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void StridedOffsetAndGradTensorsAreWrittenAsTheirValues()
    {
        using var scope = torch.NewDisposeScope();
        Tensor baseTensor = torch.arange(24, dtype: ScalarType.Float32).reshape(4, 6);
        Tensor transposed = baseTensor.t();                                    // non-contiguous
        Tensor sliced = baseTensor[TensorIndex.Slice(1, 3)];                   // storage offset 6
        Tensor leaf = torch.ones(3, requires_grad: true);
        byte[] bytes = Safetensors.Serialize(new Dictionary<string, Tensor> { ["t"] = transposed, ["s"] = sliced, ["g"] = leaf });
        using SafetensorsFile file = Safetensors.Read(bytes, "memory");
        AssertSame(transposed, file.Tensors["t"]);
        AssertSame(sliced, file.Tensors["s"]);
        AssertSame(leaf.detach(), file.Tensors["g"]);
        Assert.False(file.Tensors["g"].requires_grad);
    }

    [Fact]
    public void WriteRejectsDuplicateReservedAndUnsupportedKeysByName()
    {
        using var scope = torch.NewDisposeScope();
        var duplicate = new[] { Pair("w", torch.ones(1)), Pair("w", torch.ones(2)) };
        Assert.Contains("'w'", Assert.Throws<ArgumentException>(() => Safetensors.Serialize(duplicate)).Message);
        var complex = new[] { Pair("ok", torch.ones(1)), Pair("cplx", torch.ones(2, dtype: ScalarType.ComplexFloat32)) };
        Assert.Contains("'cplx'", Assert.Throws<ArgumentException>(() => Safetensors.Serialize(complex)).Message);
        Assert.Throws<ArgumentException>(() => Safetensors.Serialize(new[] { Pair("__metadata__", torch.ones(1)) }));
        Assert.Throws<ArgumentException>(() => Safetensors.Serialize(new[] { Pair("bad\ud800", torch.ones(1)) }));
    }

    [Fact]
    public void ReadTensorLoadsOneEntryAfterTheHeaderWasChecked()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new TempFolder();
        string path = folder.File("two.safetensors");
        Tensor a = torch.arange(6, dtype: ScalarType.Int32).reshape(2, 3);
        Safetensors.Write(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = torch.zeros(4) });

        SafetensorsHeader header = Safetensors.ReadHeader(path);
        Assert.True(header.TryGetEntry("a", out SafetensorsEntry? entry));
        Assert.Equal(new long[] { 2, 3 }, entry.Shape);
        Assert.Equal(24, entry.ByteLength);
        Tensor loaded = Safetensors.ReadTensor(path, header, entry);
        AssertSame(a, loaded);

        // An entry the header does not hold is refused.
        Assert.Throws<ArgumentException>(() => Safetensors.ReadTensor(path, header, entry with { End = entry.End + 4 }));
    }

    [Fact]
    public void ReadTensorNoticesTheFileChangedSinceItsHeaderWasRead()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new TempFolder();
        string path = folder.File("changing.safetensors");
        Safetensors.Write(path, new Dictionary<string, Tensor> { ["a"] = torch.ones(4) });
        SafetensorsHeader header = Safetensors.ReadHeader(path);
        Safetensors.Write(path, new Dictionary<string, Tensor> { ["a"] = torch.ones(4), ["b"] = torch.ones(1) });
        var ex = Assert.Throws<SafetensorsFormatException>(() => Safetensors.ReadTensor(path, header, header.Entries[0]));
        Assert.Contains(path, ex.Message);
        Assert.Equal("a", ex.TensorKey);
    }

    [Fact]
    public void DisposingTheFileDisposesItsTensorsEvenInsideAScope()
    {
        byte[] bytes;
        using (torch.NewDisposeScope()) bytes = Safetensors.Serialize(new Dictionary<string, Tensor> { ["a"] = torch.ones(3) });
        SafetensorsFile file;
        using (torch.NewDisposeScope()) file = Safetensors.Read(bytes, "memory");
        // The scope ended, yet the file's tensors live: they belong to the file, not to the scope.
        Assert.Equal(3f, file.Tensors["a"].sum().item<float>());
        Tensor a = file.Tensors["a"];
        file.Dispose();
        Assert.True(a.IsInvalid);
    }

    private static void AssertSame(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(Bytes(expected), Bytes(actual));
    }

    internal static KeyValuePair<string, Tensor> Pair(string key, Tensor t) => new(key, t);

    internal static byte[] Bytes(Tensor t) => t.contiguous().bytes.ToArray();

    private static ScalarType ScalarTypeOf(string name) => name switch
    {
        "F32" => ScalarType.Float32, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16, "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool, _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    private static int SizeOf(string name) => name switch
    {
        "F64" or "I64" => 8, "F32" or "I32" => 4, "F16" or "BF16" or "I16" => 2, _ => 1,
    };

    /// <summary>Random bit patterns (NaN payloads and all) for floats, random values for integers, 0/1 for booleans.</summary>
    private static Tensor RandomBits(long[] shape, ScalarType type, torch.Generator generator)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (type == ScalarType.Bool)
            return torch.randint(0, 2, new[] { count }, dtype: ScalarType.Byte, generator: generator).to(ScalarType.Bool).reshape(shape);
        byte[] bits = new byte[count * torch.empty(0, dtype: type).ElementSize];
        new Random(generator.initial_seed().GetHashCode() + shape.Length).NextBytes(bits);
        return FromBytes(bits, shape, type);
    }

    private static Tensor FromBytes(byte[] bits, long[] shape, ScalarType type)
    {
        Tensor t = torch.empty(shape, dtype: type);
        bits.CopyTo(t.bytes);
        return t;
    }

    private static byte[] MemoryMarshalBytes(short[] values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
