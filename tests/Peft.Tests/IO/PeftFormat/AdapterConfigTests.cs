using System.IO;
using Peft.Runtime;
using Peft.Runtime.IO;
using Xunit;

namespace Peft.Tests.IO;

public sealed class AdapterConfigTests
{
    /// <summary>Float fields are written as Python's json writes floats (PEFT's configs hold <c>"lora_dropout": 0.0</c>).</summary>
    [Theory]
    [InlineData(0.0, "0.0")]
    [InlineData(-0.0, "-0.0")]
    [InlineData(0.05, "0.05")]
    [InlineData(0.1, "0.1")]
    [InlineData(1.0, "1.0")]
    [InlineData(16.0, "16.0")]
    [InlineData(1e-4, "0.0001")]
    [InlineData(1e-5, "1e-05")]
    [InlineData(1.5e-7, "1.5e-07")]
    [InlineData(123456.789, "123456.789")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(1e16, "1e+16")]
    [InlineData(2.5e300, "2.5e+300")]
    [InlineData(-0.3, "-0.3")]
    public void FloatsAreWrittenAsPythonWritesThem(double value, string python) =>
        Assert.Equal(python, AdapterConfig.Float(value).ToJsonString());

    /// <summary>
    /// Every method's dropout field is read as a probability in [0, 1): a file outside it, or with a non-number there, is
    /// refused when it is read, naming the file and the field, not at the first training step; a value inside is taken.
    /// </summary>
    [Theory]
    [InlineData("LORA", "lora_dropout")]
    [InlineData("ADALORA", "lora_dropout")]
    [InlineData("HYDRA", "lora_dropout")]
    [InlineData("VERA", "vera_dropout")]
    [InlineData("RANDLORA", "randlora_dropout")]
    [InlineData("LOHA", "rank_dropout")]
    [InlineData("LOHA", "module_dropout")]
    [InlineData("LOKR", "rank_dropout")]
    [InlineData("LOKR", "module_dropout")]
    [InlineData("MISS", "miss_dropout")]
    public void DropoutFieldsOutsideZeroToOneAreRefusedWhenRead(string peftType, string field)
    {
        using var folder = new TempFolder();
        string path = Path.Combine(folder.Path, AdapterConfig.FileName);
        AdapterSettings Read(string value)
        {
            File.WriteAllText(path, $"{{\"peft_type\": \"{peftType}\", \"r\": 4, \"{field}\": {value}}}");
            return AdapterConfig.SettingsFor(AdapterConfig.Read(path), "q", path);
        }
        Assert.Equal(peftType, Read("0.25").PeftType);
        foreach (string bad in new[] { "1.0", "1.5", "-0.1", "\"0.1\"" })
        {
            var ex = Assert.Throws<InvalidDataException>(() => Read(bad));
            Assert.StartsWith(path, ex.Message);
            Assert.Contains($"'{field}'", ex.Message);
        }
    }
}
