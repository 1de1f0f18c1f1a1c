// Compiled into both the analyzers (netstandard2.0) and the runtime, so a mistake found at compile time and the
// same mistake found when RegisterComponents runs read the same.
namespace Peft
{
    internal static class PeftMessages
    {
        public const string RankTooSmall = "{0}: {1} rank must be at least 1, got {2}";
        public const string RankTooLarge = "{0}: {1} rank {2} is larger than min(in {3}, out {4}) = {5}; use a rank from 1 to {5}";
        public const string DropoutOutOfRange = "{0}: dropout {1} is outside [0, 1)";
        public const string UnsupportedLayer = "{0}: {1} adapts a Linear layer, but the member holds {2}";
        public const string UnknownLoRAInit = "{0}: {1} init {2} is not a LoRAInit value";

        public static string Format(string format, params object[] args) =>
            string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args);
    }
}
