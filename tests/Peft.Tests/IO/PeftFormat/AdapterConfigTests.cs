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
}
