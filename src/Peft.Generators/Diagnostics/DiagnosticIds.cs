namespace Peft.Generators.Diagnostics
{
    /// <summary>
    /// PeftDsl's diagnostic IDs. They are stable: users suppress them by ID. Linked into Peft.CodeFixes, so the fixes
    /// name exactly the IDs the analyzers report. The catalog with wrong and right examples is docs/diagnostics.md.
    /// </summary>
    internal static class DiagnosticIds
    {
        /// <summary>A class with adapters (or a type containing it) is not partial.</summary>
        public const string NotPartial = "PEFT001";

        /// <summary>An adapter is on a member that cannot hold the adapter layer.</summary>
        public const string MemberCannotHoldAdapter = "PEFT002";

        /// <summary>An adapter field is readonly (or an adapter property has no setter).</summary>
        public const string ReadOnlyMember = "PEFT003";

        /// <summary>A rank or block is below 1.</summary>
        public const string RankTooSmall = "PEFT004";

        /// <summary>A rank is above min(in, out) of a layer whose shape is known.</summary>
        public const string RankTooLarge = "PEFT005";

        /// <summary>A Bone block does not divide the layer's in-features (Bat: also out-features).</summary>
        public const string BlockDoesNotDivide = "PEFT006";

        /// <summary>A dropout probability is outside [0, 1).</summary>
        public const string DropoutOutOfRange = "PEFT007";

        /// <summary>Two adapters share one name on a member (or a name is empty).</summary>
        public const string DuplicateAdapterName = "PEFT008";

        /// <summary>[MergeWith] names an adapter that does not exist.</summary>
        public const string UnknownMergeSource = "PEFT009";

        /// <summary>[MergeWith] weights: wrong count or a non-finite value.</summary>
        public const string InvalidMergeWeights = "PEFT010";

        /// <summary>The merge method does not fit the adapters it combines.</summary>
        public const string MergeMethodMismatch = "PEFT011";

        /// <summary>[MergeWith] density outside (0, 1].</summary>
        public const string DensityOutOfRange = "PEFT012";

        /// <summary>Class-level Targets names no field (or is missing).</summary>
        public const string UnknownTarget = "PEFT013";

        /// <summary>The class declares its own RegisterComponents (or another member PeftDsl generates).</summary>
        public const string OwnGeneratedMember = "PEFT014";

        /// <summary>No constructor calls RegisterComponents() (warning).</summary>
        public const string RegisterComponentsNotCalled = "PEFT015";

        /// <summary>The adapter method does not support the layer the member holds.</summary>
        public const string UnsupportedLayer = "PEFT016";

        /// <summary>Layers of one class whose adapters share a name differ in what PEFT's adapter_config.json holds once per adapter.</summary>
        public const string SharedConfigMismatch = "PEFT017";

        /// <summary>AdaLoRA's TotalSteps is missing or below 1.</summary>
        public const string TotalStepsMissing = "PEFT018";

        /// <summary>AdaLoRA's Tinit is not below TotalSteps − Tfinal: the budget would never fall.</summary>
        public const string ScheduleEmpty = "PEFT019";

        /// <summary>AdaLoRA's InitRank is below its target rank.</summary>
        public const string InitRankBelowTarget = "PEFT020";

        /// <summary>An importance EMA's beta (AdaLoRA, IncreLoRA) is outside (0, 1).</summary>
        public const string BetaOutOfRange = "PEFT021";

        /// <summary>IncreLoRA's ranks are out of order: InitRank ≤ target rank ≤ MaxRank does not hold.</summary>
        public const string IncreLoRARanks = "PEFT022";

        /// <summary>A schedule interval or count (AdaLoRA's DeltaT; IncreLoRA's Interval, TopH, RankIncrement) is below 1.</summary>
        public const string IntervalTooSmall = "PEFT023";

        /// <summary>An attribute property that counts optimizer steps (LaMDA's FreezeBStart, FreezeBSteps) is negative.</summary>
        public const string NegativeStepCount = "PEFT024";

        /// <summary>Diagnostic property: PEFT017's member, whose name its fix gives the adapter.</summary>
        public const string MemberNameProperty = "PeftMember";

        /// <summary>Diagnostic property: the block sizes PEFT006's fix offers, nearest first, comma-separated.</summary>
        public const string BlockCandidatesProperty = "PeftBlocks";

        /// <summary>SaRA's rank selects more weights, rank·(in + out), than the layer holds.</summary>
        public const string SparseRankTooLarge = "PEFT028";

        /// <summary>An option that must be at least 0 (SaRA's Threshold, ReselectAfter, NuclearNormWeight) is negative.</summary>
        public const string NegativeOption = "PEFT029";

        /// <summary>[MergeWith] asks for Space = MergeSpace.Core with a method that cannot run there (WIDEN, LoRA-LEGO).</summary>
        public const string MergeSpaceMismatch = "PEFT032";

        /// <summary>[MergeWith] method LoraLego without Rank (the number of clusters).</summary>
        public const string MergeRankRequired = "PEFT033";

        /// <summary>Iso-C / Iso-CTS in full space over LoRA sources: the result is full-rank and gets truncated (warning; fix: Space = MergeSpace.Core).</summary>
        public const string FullRankMerge = "PEFT034";

        /// <summary>The generator caught an exception of its own (a PeftDsl bug); reported by the generator.</summary>
        public const string InternalError = "PEFT999";
    }
}
