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
        public const string SequentialRankTooLarge = "{0}: {1} sequential rank {2} is larger than the layer's out-features {3}; use a rank from 1 to {3}";

        // PEFT004 / PEFT006 for Bone (PEFT's MiSS): {0} site, {1} block, {2} in-features, {3} out-features, {4} nearest valid block.
        public const string BlockTooSmall = "{0}: {1} block must be at least 1, got {2}";
        public const string BoneBlockDoesNotDivide = "{0}: Bone block {1} does not divide the layer's in-features {2} (the layer is {2} → {3}); the nearest block that does is {4}";
        public const string BatBlockDoesNotDivide = "{0}: Bone block {1} does not divide the layer's in-features {2} and out-features {3} (Bat needs both); the nearest block that does is {4}";

        /// <summary>The divisor of <paramref name="n"/> nearest to <paramref name="block"/> (the smaller on a tie), for PEFT006's suggestion.</summary>
        public static long NearestDivisor(long n, long block)
        {
            long best = 1;
            for (long d = 1; d <= n; d++)
            {
                if (n % d != 0) continue;
                if (System.Math.Abs(d - block) < System.Math.Abs(best - block)) best = d;
            }
            return best;
        }
        public const string ProbabilityOutOfRange = "{0}: {1} {2} {3} is outside [0, 1)";
        public const string LoKrDecomposeFactor = "{0}: LoKr decompose factor {1} must be -1 (factors near the square root) or at least 1 (layer in {2}, out {3})";
        public const string VeRASharedMismatch = "{0}: VeRA adapter '{1}' has rank {2} and projection seed {3} here but rank {4} and projection seed {5} at {6}; the layers of one VeRA adapter share its projections, so they need one rank and one seed";
        public const string UnknownLoRAInit = "{0}: {1} init {2} is not a LoRAInit value";

        // PEFT017, and the runtime's refusal at RegisterComponents and at save: {0} the later layer, {1} adapter name,
        // {2} config key, {3} its value there (JSON), {4} the value at the first layer (JSON), {5} the first layer.
        public const string SharedConfigMismatch = "{0}: adapter '{1}' has {2} = {3} here but {4} at {5}; PEFT's adapter_config.json holds one {2} for every layer of an adapter, so give one of these layers another adapter Name";

        // PEFT028: {0} site, {1} method, {2} rank, {3} in, {4} out, {5} rank·(in + out), {6} in·out, {7} largest rank.
        public const string SparseRankTooLarge = "{0}: {1} rank {2} selects {2}·({3} + {4}) = {5} weights, more than the layer's {6}; use a rank from 1 to {7}";

        // PEFT029: {0} site, {1} method, {2} option in words, {3} value.
        public const string NegativeOption = "{0}: {1} {2} must be at least 0, got {3}";

        // AdaLoRA / IncreLoRA (PEFT018–PEFT023).
        public const string TotalStepsMissing = "{0}: AdaLoRA needs TotalSteps, the number of training steps (PEFT's total_step), of at least 1; got {1}";
        public const string ScheduleEmpty = "{0}: AdaLoRA Tinit {1} must be less than TotalSteps − Tfinal = {2} − {3} = {4}: the budget falls between step Tinit and step TotalSteps − Tfinal";
        public const string InitRankBelowTarget = "{0}: {1} InitRank {2} is less than the target rank {3}; the budget only falls, so InitRank must be at least the target rank";
        public const string BetaOutOfRange = "{0}: {1} {2} {3} is outside (0, 1)";
        public const string IncreLoRARanks = "{0}: IncreLoRA needs InitRank ≤ target rank ≤ MaxRank, got InitRank {1}, target rank {2}, MaxRank {3}";
        public const string IntervalTooSmall = "{0}: {1} {2} must be at least 1, got {3}";

        // PEFT024: {0} site, {1} method, {2} the option, {3} its value.
        public const string ScheduleStepsNegative = "{0}: {1} {2} must be at least 0 optimizer steps, got {3}";

        public static string Format(string format, params object[] args) =>
            string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args);
    }
}
