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
        public const string ProbabilityOutOfRange = "{0}: {1} {2} {3} is outside [0, 1)";
        public const string LoKrDecomposeFactor = "{0}: LoKr decompose factor {1} must be -1 (factors near the square root) or at least 1 (layer in {2}, out {3})";
        public const string VeRASharedMismatch = "{0}: VeRA adapter '{1}' has rank {2} and projection seed {3} here but rank {4} and projection seed {5} at {6}; the layers of one VeRA adapter share its projections, so they need one rank and one seed";

        public static string Format(string format, params object[] args) =>
            string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args);
    }
}
