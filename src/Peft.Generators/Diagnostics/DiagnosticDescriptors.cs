using Microsoft.CodeAnalysis;

namespace Peft.Generators.Diagnostics
{
    /// <summary>
    /// Every diagnostic PeftDsl reports, PEFT001–PEFT023. Where the runtime checks the same rule when
    /// <c>RegisterComponents()</c> runs (a shape that is no compile-time constant), the message format is the runtime's
    /// own, from <see cref="PeftMessages"/>, so both read the same. An ID with several formats has one descriptor per
    /// format, all of one severity and category.
    /// </summary>
    internal static class DiagnosticDescriptors
    {
        /// <summary>The category of every PeftDsl diagnostic.</summary>
        public const string Category = "PeftDsl";

        private const string HelpBase = "https://github.com/peftdsl/peftdsl/blob/main/docs/diagnostics.md#";

        private static DiagnosticDescriptor Error(string id, string title, string message, string description) =>
            new DiagnosticDescriptor(id, title, message, Category, DiagnosticSeverity.Error, isEnabledByDefault: true,
                description: description, helpLinkUri: HelpBase + id.ToLowerInvariant());

        private static DiagnosticDescriptor Warning(string id, string title, string message, string description) =>
            new DiagnosticDescriptor(id, title, message, Category, DiagnosticSeverity.Warning, isEnabledByDefault: true,
                description: description, helpLinkUri: HelpBase + id.ToLowerInvariant());

        // ---- PEFT001 -------------------------------------------------------------------------------------------

        /// <summary>PEFT001: {0} the type that is not partial, {1} the class with adapters.</summary>
        public static readonly DiagnosticDescriptor NotPartial = Error(
            DiagnosticIds.NotPartial,
            "Class with adapters is not partial",
            "{0} is not partial, so PeftDsl cannot write the adapter wiring of {1}; add the partial modifier to {0}",
            "PeftDsl generates RegisterComponents() into the class that declares adapters, which needs that class and every type containing it to be partial. Without it no adapter is wired and the model trains without them.");

        // ---- PEFT002 -------------------------------------------------------------------------------------------

        /// <summary>PEFT002: {0} site, {1} method, {2} the member's type.</summary>
        public static readonly DiagnosticDescriptor MemberTypeCannotHoldAdapter = Error(
            DiagnosticIds.MemberCannotHoldAdapter,
            "Adapter member's type cannot hold the adapter layer",
            "{0}: [{1}] is on a member of type {2}, which cannot hold the adapter layer; declare it as Module<Tensor, Tensor>",
            "RegisterComponents() replaces the member's layer by an adapter layer that wraps it. The adapter layer is a Module<Tensor, Tensor>, not a Linear, so the member must be declared Module<Tensor, Tensor>.");

        /// <summary>PEFT002: {0} site, {1} method, {2} what kind of member it is (static, abstract, indexer, ...).</summary>
        public static readonly DiagnosticDescriptor MemberCannotBeAssigned = Error(
            DiagnosticIds.MemberCannotHoldAdapter,
            "Adapter member cannot hold the adapter layer",
            "{0}: [{1}] is on a {2} member, which RegisterComponents() cannot replace by the adapter layer; use an instance field of type Module<Tensor, Tensor>",
            "RegisterComponents() reads the member's layer and assigns the adapter layer back to the same instance member, which a static, abstract, write-only or indexer member does not allow.");

        // ---- PEFT003 -------------------------------------------------------------------------------------------

        /// <summary>PEFT003: {0} site, {1} method.</summary>
        public static readonly DiagnosticDescriptor ReadOnlyField = Error(
            DiagnosticIds.ReadOnlyMember,
            "Adapter field is readonly",
            "{0}: [{1}] is on a readonly field, which RegisterComponents() cannot replace by the adapter layer; remove readonly",
            "The generated RegisterComponents() assigns the adapter layer to the field after the constructor has set it, which a readonly field forbids.");

        /// <summary>PEFT003: {0} site, {1} method.</summary>
        public static readonly DiagnosticDescriptor PropertyWithoutSetter = Error(
            DiagnosticIds.ReadOnlyMember,
            "Adapter property has no setter",
            "{0}: [{1}] is on a property without a set accessor, so RegisterComponents() cannot replace its layer by the adapter layer; add a set accessor (init is not enough)",
            "The generated RegisterComponents() assigns the adapter layer to the property after the constructor has set it, which needs an ordinary set accessor.");

        // ---- PEFT004 -------------------------------------------------------------------------------------------

        /// <summary>PEFT004: the runtime's <see cref="PeftMessages.RankTooSmall"/>.</summary>
        public static readonly DiagnosticDescriptor RankTooSmall = Error(
            DiagnosticIds.RankTooSmall,
            "Rank or block is less than 1",
            PeftMessages.RankTooSmall,
            "An adapter's rank (or Bone's block) is the inner dimension of its trainable factors; it must be at least 1.");

        /// <summary>PEFT004: the runtime's <see cref="PeftMessages.BlockTooSmall"/>.</summary>
        public static readonly DiagnosticDescriptor BlockTooSmall = Error(
            DiagnosticIds.RankTooSmall,
            "Rank or block is less than 1",
            PeftMessages.BlockTooSmall,
            "An adapter's rank (or Bone's block) is the inner dimension of its trainable factors; it must be at least 1.");

        /// <summary>PEFT004: {0} where, {1} the rank.</summary>
        public static readonly DiagnosticDescriptor MergeRankNegative = Error(
            DiagnosticIds.RankTooSmall,
            "Rank or block is less than 1",
            "{0}: [MergeWith] Rank must be 0 (the sum of the source ranks, capped at min(in, out)) or at least 1, got {1}",
            "The rank of a merged adapter is 0 for the default or a positive number.");

        // ---- PEFT005 -------------------------------------------------------------------------------------------

        /// <summary>PEFT005: the runtime's <see cref="PeftMessages.RankTooLarge"/>.</summary>
        public static readonly DiagnosticDescriptor RankTooLarge = Error(
            DiagnosticIds.RankTooLarge,
            "Rank is larger than the layer allows",
            PeftMessages.RankTooLarge,
            "A rank above min(in, out) adds parameters without adding expressive power (the update B·A can never exceed that rank) and makes PiSSA and OLoRA fail; PEFT accepts it silently.");

        /// <summary>PEFT005: the runtime's <see cref="PeftMessages.SequentialRankTooLarge"/>.</summary>
        public static readonly DiagnosticDescriptor SequentialRankTooLarge = Error(
            DiagnosticIds.RankTooLarge,
            "Rank is larger than the layer allows",
            PeftMessages.SequentialRankTooLarge,
            "Hydra's sequential branch maps the layer's output to itself, so its rank cannot usefully exceed the out-features.");

        // ---- PEFT006 -------------------------------------------------------------------------------------------

        /// <summary>PEFT006: the runtime's <see cref="PeftMessages.BoneBlockDoesNotDivide"/>.</summary>
        public static readonly DiagnosticDescriptor BoneBlockDoesNotDivide = Error(
            DiagnosticIds.BlockDoesNotDivide,
            "Bone block does not divide the layer",
            PeftMessages.BoneBlockDoesNotDivide,
            "Bone (PEFT's MiSS) sums the input in blocks of the block size, so the block must divide the in-features; PEFT pads the input instead, which changes the method. Bat tiles the weight in block × block squares and also needs the block to divide the out-features.");

        /// <summary>PEFT006: the runtime's <see cref="PeftMessages.BatBlockDoesNotDivide"/>.</summary>
        public static readonly DiagnosticDescriptor BatBlockDoesNotDivide = Error(
            DiagnosticIds.BlockDoesNotDivide,
            "Bone block does not divide the layer",
            PeftMessages.BatBlockDoesNotDivide,
            "Bone (PEFT's MiSS) sums the input in blocks of the block size, so the block must divide the in-features; PEFT pads the input instead, which changes the method. Bat tiles the weight in block × block squares and also needs the block to divide the out-features.");

        // ---- PEFT007 -------------------------------------------------------------------------------------------

        /// <summary>PEFT007: the runtime's <see cref="PeftMessages.DropoutOutOfRange"/>.</summary>
        public static readonly DiagnosticDescriptor DropoutOutOfRange = Error(
            DiagnosticIds.DropoutOutOfRange,
            "Dropout is outside [0, 1)",
            PeftMessages.DropoutOutOfRange,
            "A dropout probability must be at least 0 (no dropout) and below 1 (1 would drop everything and divide by zero when rescaling).");

        /// <summary>PEFT007: the runtime's <see cref="PeftMessages.ProbabilityOutOfRange"/>.</summary>
        public static readonly DiagnosticDescriptor ProbabilityOutOfRange = Error(
            DiagnosticIds.DropoutOutOfRange,
            "Dropout is outside [0, 1)",
            PeftMessages.ProbabilityOutOfRange,
            "A dropout probability must be at least 0 (no dropout) and below 1 (1 would drop everything and divide by zero when rescaling).");

        // ---- PEFT008 -------------------------------------------------------------------------------------------

        /// <summary>PEFT008: {0} site, {1} the name, {2} the first method, {3} the second method.</summary>
        public static readonly DiagnosticDescriptor DuplicateAdapterName = Error(
            DiagnosticIds.DuplicateAdapterName,
            "Two adapters with one name",
            "{0}: two adapters are named '{1}' ([{2}] and [{3}]); give one of them another Name",
            "Adapters on one layer are told apart by name (their parameters are keyed by it, as lora_A.<name>), so each needs its own. Name defaults to \"default\".");

        /// <summary>PEFT008: {0} site, {1} the attribute.</summary>
        public static readonly DiagnosticDescriptor EmptyAdapterName = Error(
            DiagnosticIds.DuplicateAdapterName,
            "Two adapters with one name",
            "{0}: [{1}] has an empty Name; leave Name out for \"default\" or give the adapter a name",
            "Adapters are told apart by name, and an empty name cannot key parameters or files.");

        /// <summary>PEFT008: {0} where, {1} the name.</summary>
        public static readonly DiagnosticDescriptor MergeNameTaken = Error(
            DiagnosticIds.DuplicateAdapterName,
            "Two adapters with one name",
            "{0}: [MergeWith] creates adapter '{1}', but an adapter of that name exists already; choose another Name",
            "A merge creates a new named adapter beside the existing ones, so its Name must differ from theirs and from other merges'.");

        // ---- PEFT009 -------------------------------------------------------------------------------------------

        /// <summary>PEFT009: {0} where, {1} the unknown name, {2} the names that exist.</summary>
        public static readonly DiagnosticDescriptor UnknownMergeSource = Error(
            DiagnosticIds.UnknownMergeSource,
            "[MergeWith] names an unknown adapter",
            "{0}: [MergeWith] names adapter '{1}', which is not declared there; the adapters declared there are: {2}",
            "On a field, [MergeWith] combines that field's adapters; on a class, the adapters of its fields and of the annotated classes it holds. Every name it lists must be one of those.");

        /// <summary>PEFT009: {0} where.</summary>
        public static readonly DiagnosticDescriptor MergeWithNoAdapters = Error(
            DiagnosticIds.UnknownMergeSource,
            "[MergeWith] names an unknown adapter",
            "{0}: [MergeWith] names no adapter; list the adapters to combine, e.g. [MergeWith(\"math\", \"code\")]",
            "A merge combines at least one existing adapter.");

        /// <summary>PEFT009: {0} where, {1} the adapters, {2} where each is declared.</summary>
        public static readonly DiagnosticDescriptor MergeSourcesApart = Error(
            DiagnosticIds.UnknownMergeSource,
            "[MergeWith] names an unknown adapter",
            "{0}: [MergeWith] combines {1}, but no layer holds all of them ({2}); a merge combines adapters of one layer, so name adapters declared on the same fields",
            "A merge creates its adapter on every layer that holds all the adapters it names; where no layer holds them all there is nothing to merge.");

        // ---- PEFT010 -------------------------------------------------------------------------------------------

        /// <summary>PEFT010: {0} where, {1} weight count, {2} adapter count.</summary>
        public static readonly DiagnosticDescriptor WeightsCountMismatch = Error(
            DiagnosticIds.InvalidMergeWeights,
            "[MergeWith] weights are invalid",
            "{0}: [MergeWith] has {1} weights for {2} adapters; give one weight per adapter, in the same order",
            "Weights pair up with the listed adapters one to one.");

        /// <summary>PEFT010: {0} where, {1} the weight, {2} its adapter.</summary>
        public static readonly DiagnosticDescriptor WeightNotFinite = Error(
            DiagnosticIds.InvalidMergeWeights,
            "[MergeWith] weights are invalid",
            "{0}: [MergeWith] weight {1} for '{2}' is not a finite number; use a finite weight",
            "A NaN or infinite weight makes every merged value NaN or infinite.");

        // ---- PEFT011 -------------------------------------------------------------------------------------------

        /// <summary>PEFT011: {0} where, {1} merge method, {2} adapter name, {3} its method, {4} its site.</summary>
        public static readonly DiagnosticDescriptor MergeNeedsLoRA = Error(
            DiagnosticIds.MergeMethodMismatch,
            "Merge method does not fit the adapters",
            "{0}: [MergeWith] method {1} creates a LoRA adapter, but '{2}' is a {3} adapter at {4}, whose layer holds no LoRA adapter; merge LoRA or DoRA adapters, or fold {3} adapters into the base weights at run time with AdapterMerger.FoldIntoBase",
            "Every merge method creates a new LoRA adapter on the layers that hold the sources: Linear and Cat stack LoRA factors (a DoRA source's full delta is re-factorised exactly), Svd, Ties, DareLinear, DareTies, MagnitudePrune and ModelStock refactorise the combined delta weights. Only a layer of LoRA and DoRA adapters can hold a LoRA adapter; Bone, Hydra, VeRA, LoHa, LoKr and IA3 layers cannot, so their adapters are combined into the base weights with AdapterMerger.FoldIntoBase instead.");

        /// <summary>PEFT011: {0} where, {1} the adapter count.</summary>
        public static readonly DiagnosticDescriptor ModelStockNeedsTwo = Error(
            DiagnosticIds.MergeMethodMismatch,
            "Merge method does not fit the adapters",
            "{0}: [MergeWith] method ModelStock interpolates by the angle between adapters, so it needs at least 2, got {1}; add an adapter or use MergeMethod.Linear",
            "Model Stock measures the angle between fine-tuned deltas, which needs two or more of them.");

        /// <summary>PEFT011: {0} where, {1} the method or space, {2} the adapter, {3} its method, {4} its site.</summary>
        public static readonly DiagnosticDescriptor MergeNeedsLoRAFactors = Error(
            DiagnosticIds.MergeMethodMismatch,
            "Merge method does not fit the adapters",
            "{0}: [MergeWith] {1} works on the sources' LoRA factors B·A, but '{2}' is a {3} adapter at {4}, whose delta is no such product; merge plain [LoRA] adapters, or use Space = MergeSpace.Full with another method",
            "Core Space merging builds its bases from the stacked A and B factors of the sources, and LoRA-LEGO clusters their rank-1 units (aⱼ, bⱼ); both need plain LoRA adapters. A DoRA adapter's delta is rescaled per column by its magnitude vector, so it is not the product of its factors.");

        // ---- PEFT012 -------------------------------------------------------------------------------------------

        /// <summary>PEFT012: {0} where, {1} the density.</summary>
        public static readonly DiagnosticDescriptor DensityOutOfRange = Error(
            DiagnosticIds.DensityOutOfRange,
            "Density is outside (0, 1]",
            "{0}: [MergeWith] density {1} is outside (0, 1]; use the fraction of entries to keep, e.g. 0.5",
            "TIES, DARE and magnitude pruning keep a fraction of each delta's entries: 0 would keep nothing (and DARE divides by it), more than 1 is no fraction.");

        /// <summary>PEFT012: {0} where, {1} the fraction.</summary>
        public static readonly DiagnosticDescriptor CommonFractionOutOfRange = Error(
            DiagnosticIds.DensityOutOfRange,
            "CommonFraction is outside (0, 1]",
            "{0}: [MergeWith] common fraction {1} is outside (0, 1]; use the share of singular directions given to the common subspace, e.g. 0.8 (the paper's)",
            "Iso-CTS gives the fraction CommonFraction of the min(out, in) singular directions to the subspace common to all tasks and the rest to the tasks: 0 or less leaves no common part to start from, more than 1 is no fraction.");

        // ---- PEFT013 -------------------------------------------------------------------------------------------

        /// <summary>PEFT013: {0} class, {1} method, {2} the target.</summary>
        public static readonly DiagnosticDescriptor UnknownTarget = Error(
            DiagnosticIds.UnknownTarget,
            "Class-level Targets names no field",
            "{0}: class-level [{1}] targets '{2}', but {0} declares no field or property of that name; use nameof() of a field declared in {0}",
            "Targets is PEFT's target_modules checked by the compiler: each name must be a field or property declared in the class itself. PEFT silently skips a mistyped target; PeftDsl refuses it.");

        /// <summary>PEFT013: {0} class, {1} method.</summary>
        public static readonly DiagnosticDescriptor NoTargets = Error(
            DiagnosticIds.UnknownTarget,
            "Class-level Targets names no field",
            "{0}: class-level [{1}] has no Targets, so it adapts no field; add Targets = new[] {{ nameof(field) }} or put the attribute on the field",
            "On a class an adapter attribute applies to the fields its Targets names, and to nothing else.");

        // ---- PEFT014 -------------------------------------------------------------------------------------------

        /// <summary>PEFT014: {0} class, {1} member.</summary>
        public static readonly DiagnosticDescriptor OwnGeneratedMember = Error(
            DiagnosticIds.OwnGeneratedMember,
            "Class declares a member PeftDsl generates",
            "{0} declares its own {1}, which PeftDsl generates for classes with adapters, so none of its adapters is wired; remove it and do any setup in the constructor before calling RegisterComponents()",
            "The generated RegisterComponents() wires the adapters, calls base.RegisterComponents() and freezes the model; a class that writes its own (or another generated member) is left alone by the generator.");

        // ---- PEFT015 -------------------------------------------------------------------------------------------

        /// <summary>PEFT015 (warning): {0} class.</summary>
        public static readonly DiagnosticDescriptor RegisterComponentsNotCalled = new DiagnosticDescriptor(
            DiagnosticIds.RegisterComponentsNotCalled,
            "Constructor never calls RegisterComponents()",
            "{0}: the constructor never calls RegisterComponents(), so no adapter is wired; call RegisterComponents() at the end of the constructor",
            Category,
            DiagnosticSeverity.Warning,
            isEnabledByDefault: true,
            description: "Adapters are wired, and a [PeftModel] frozen, when RegisterComponents() runs, which TorchSharp modules call at the end of their constructor after assigning their layers.",
            helpLinkUri: HelpBase + "peft015");

        // ---- PEFT016 -------------------------------------------------------------------------------------------

        /// <summary>PEFT016: the runtime's <see cref="PeftMessages.UnsupportedLayer"/>.</summary>
        public static readonly DiagnosticDescriptor UnsupportedLayer = Error(
            DiagnosticIds.UnsupportedLayer,
            "Adapter method does not support the layer",
            PeftMessages.UnsupportedLayer,
            "Every adapter method wraps a Linear layer; a Conv2d, Embedding or other module assigned to the member would fail when RegisterComponents() runs.");

        /// <summary>PEFT016: {0} site, {1} first method, {2} second method.</summary>
        public static readonly DiagnosticDescriptor MixedMethods = Error(
            DiagnosticIds.UnsupportedLayer,
            "Adapter method does not support the layer",
            "{0}: [{2}] cannot join [{1}] on one member, because a wrapped layer holds adapters of one method only (LoRA and DoRA count as one); move one of them to another member",
            "The first adapter replaces the Linear by that method's adapter layer, which a second method cannot wrap again.");

        // ---- PEFT017 -------------------------------------------------------------------------------------------

        /// <summary>PEFT017: the runtime's <see cref="PeftMessages.SharedConfigMismatch"/>.</summary>
        public static readonly DiagnosticDescriptor SharedConfigMismatch = Error(
            DiagnosticIds.SharedConfigMismatch,
            "Adapters of one name differ in what PEFT's config holds once",
            PeftMessages.SharedConfigMismatch,
            "PEFT's adapter_config.json holds one method and one value of each shared field (use_dora, lora_dropout, init_lora_weights, use_rslora, Bone's variant, ...) for every layer of an adapter; only r and alpha may differ per layer. Layers whose adapters share a name but differ otherwise could be trained but not saved.");

        // ---- PEFT018–PEFT023: adaptive ranks (AdaLoRA, IncreLoRA) ---------------------------------------------

        /// <summary>PEFT018: the runtime's <see cref="PeftMessages.TotalStepsMissing"/>.</summary>
        public static readonly DiagnosticDescriptor TotalStepsMissing = Error(
            DiagnosticIds.TotalStepsMissing,
            "AdaLoRA's TotalSteps is missing or below 1",
            PeftMessages.TotalStepsMissing,
            "AdaLoRA's budget schedule runs from step Tinit to step TotalSteps − Tfinal, so it needs the number of training steps (PEFT's total_step, which PEFT also requires).");

        /// <summary>PEFT019: the runtime's <see cref="PeftMessages.ScheduleEmpty"/>.</summary>
        public static readonly DiagnosticDescriptor ScheduleEmpty = Error(
            DiagnosticIds.ScheduleEmpty,
            "AdaLoRA's Tinit is not below TotalSteps − Tfinal",
            PeftMessages.ScheduleEmpty,
            "The budget falls on a cubic schedule between step Tinit and step TotalSteps − Tfinal; with Tinit ≥ TotalSteps − Tfinal that window is empty (PEFT refuses the same config).");

        /// <summary>PEFT020: the runtime's <see cref="PeftMessages.InitRankBelowTarget"/>.</summary>
        public static readonly DiagnosticDescriptor InitRankBelowTarget = Error(
            DiagnosticIds.InitRankBelowTarget,
            "AdaLoRA's InitRank is below its target rank",
            PeftMessages.InitRankBelowTarget,
            "AdaLoRA starts every layer at InitRank and masks ranks until targetRank per layer are left on average; it never adds ranks, so InitRank must be at least targetRank.");

        /// <summary>PEFT021: the runtime's <see cref="PeftMessages.BetaOutOfRange"/>.</summary>
        public static readonly DiagnosticDescriptor BetaOutOfRange = Error(
            DiagnosticIds.BetaOutOfRange,
            "Importance EMA beta is outside (0, 1)",
            PeftMessages.BetaOutOfRange,
            "Beta1 and Beta2 smooth the importance and its uncertainty as exponential moving averages; 0 keeps no history and 1 never moves (PEFT asserts 0 < beta < 1).");

        /// <summary>PEFT022: the runtime's <see cref="PeftMessages.IncreLoRARanks"/>.</summary>
        public static readonly DiagnosticDescriptor IncreLoRARanks = Error(
            DiagnosticIds.IncreLoRARanks,
            "IncreLoRA's ranks are out of order",
            PeftMessages.IncreLoRARanks,
            "IncreLoRA starts each layer at InitRank and grows ranks until targetRank per layer are used on average; each layer preallocates MaxRank ranks, so InitRank ≤ targetRank ≤ MaxRank.");

        /// <summary>PEFT023: the runtime's <see cref="PeftMessages.IntervalTooSmall"/>.</summary>
        public static readonly DiagnosticDescriptor IntervalTooSmall = Error(
            DiagnosticIds.IntervalTooSmall,
            "Schedule interval or count is below 1",
            PeftMessages.IntervalTooSmall,
            "AdaLoRA masks every DeltaT steps; IncreLoRA grows TopH layers by RankIncrement ranks every Interval steps. Each must be at least 1.");

        // ---- PEFT028 / PEFT029 -----------------------------------------------------------------------------------

        /// <summary>PEFT028: the runtime's <see cref="PeftMessages.SparseRankTooLarge"/>.</summary>
        public static readonly DiagnosticDescriptor SparseRankTooLarge = Error(
            DiagnosticIds.SparseRankTooLarge,
            "Sparse adapter selects more weights than the layer holds",
            PeftMessages.SparseRankTooLarge,
            "SaRA trains rank·(in + out) weights of the layer, as many numbers as a LoRA of that rank; PEFT's SHiRA, whose format it is saved in, refuses a rank for which that count exceeds in·out.");

        /// <summary>PEFT029: the runtime's <see cref="PeftMessages.NegativeOption"/>.</summary>
        public static readonly DiagnosticDescriptor NegativeOption = Error(
            DiagnosticIds.NegativeOption,
            "Option must be at least 0",
            PeftMessages.NegativeOption,
            "A threshold, a step count or a regulariser weight below 0 has no meaning; 0 turns the option off.");

        // ---- PEFT032 -------------------------------------------------------------------------------------------

        /// <summary>PEFT032: {0} where, {1} the method, {2} why.</summary>
        public static readonly DiagnosticDescriptor MergeSpaceMismatch = Error(
            DiagnosticIds.MergeSpaceMismatch,
            "Merge method cannot run in core space",
            "{0}: [MergeWith] method {1} cannot run in core space: {2}; remove Space = MergeSpace.Core (LoRA sources stay low-rank in full space for this method)",
            "Core Space merging combines small R×R core matrices. Every method can combine them except WIDEN, which scores the columns of the base weight, and LoRA-LEGO, which clusters the sources' own rank-1 units; both keep LoRA sources exactly low-rank in full space already.");

        // ---- PEFT033 -------------------------------------------------------------------------------------------

        /// <summary>PEFT033: {0} where, {1} the method.</summary>
        public static readonly DiagnosticDescriptor MergeRankRequired = Error(
            DiagnosticIds.MergeRankRequired,
            "Merge method needs Rank",
            "{0}: [MergeWith] method {1} needs Rank, the number of clusters (the new adapter's rank); add Rank = k, e.g. the sources' own rank",
            "LoRA-LEGO clusters the sources' rank-1 units into Rank clusters, whose centroids are the new adapter's rank-1 units; there is no default for how many.");

        // ---- PEFT034 -------------------------------------------------------------------------------------------

        /// <summary>PEFT034: {0} where, {1} the method.</summary>
        public static readonly DiagnosticDescriptor FullRankMerge = Warning(
            DiagnosticIds.FullRankMerge,
            "Merge makes LoRA deltas full-rank in full space",
            "{0}: [MergeWith] method {1} in full space spreads the mean singular value over every direction, so the merge of these LoRA adapters is full-rank and its truncation to the new adapter's rank keeps little of it; add Space = MergeSpace.Core to stay exact and low-rank",
            "Iso-C and Iso-CTS set every singular value of the merged delta to their mean. On the full [out, in] delta of LoRA sources that includes the min(out, in) − R directions where the sum is zero, so the result has full rank, and the LoRA adapter the merge creates holds only its truncation. In core space the same operation runs on the R×R core and the result is exact at rank ≤ R.");

        // ---- PEFT024 -------------------------------------------------------------------------------------------

        /// <summary>PEFT024: the runtime's <see cref="PeftMessages.ScheduleStepsNegative"/>.</summary>
        public static readonly DiagnosticDescriptor NegativeStepCount = Error(
            DiagnosticIds.NegativeStepCount,
            "A count of optimizer steps is negative",
            PeftMessages.ScheduleStepsNegative,
            "A schedule option (LaMDA's FreezeBStart and FreezeBSteps) counts optimizer steps: 0 or more.");

        // ---- PEFT999 (reported by the generator, not an analyzer) ----------------------------------------------

        /// <summary>PEFT999: {0} class, {1} exception type, message and first stack frame.</summary>
        public static readonly DiagnosticDescriptor InternalError = Error(
            DiagnosticIds.InternalError,
            "Internal error in the PeftDsl generator",
            "PeftDsl's generator failed on {0} and wrote none of its code, so its adapters are not wired: {1}; this is a bug in PeftDsl, please file an issue with this message",
            "The generator caught an exception of its own while reading the class. It reports it instead of passing it off as a class with nothing to generate, which would build a model without its adapters.");
    }
}
