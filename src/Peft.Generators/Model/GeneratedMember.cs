using System.Collections.Immutable;
using Microsoft.CodeAnalysis;

namespace Peft.Generators.Model
{
    /// <summary>
    /// A member the emitter writes into an annotated class. The parser uses this list to leave alone classes that
    /// already declare one of them and to mark with <c>new</c> those that hide an inherited member.
    /// </summary>
    internal sealed class GeneratedMember
    {
        private GeneratedMember(string name, Accessibility accessibility, bool peftModelOnly, string[]? parameters = null, bool isOverride = false)
        {
            Name = name;
            Accessibility = accessibility;
            PeftModelOnly = peftModelOnly;
            Parameters = parameters is null ? (ImmutableArray<string>?)null : ImmutableArray.Create(parameters);
            IsOverride = isOverride;
        }

        public string Name { get; }

        public Accessibility Accessibility { get; }

        /// <summary>Only <c>[PeftModel]</c> classes get it.</summary>
        public bool PeftModelOnly { get; }

        /// <summary>For methods, the parameter types as <see cref="SymbolDisplayFormat.FullyQualifiedFormat"/> shows them; null otherwise.</summary>
        public ImmutableArray<string>? Parameters { get; }

        public bool IsOverride { get; }

        public static readonly ImmutableArray<GeneratedMember> All = ImmutableArray.Create(
            new GeneratedMember("RegisterComponents", Accessibility.Protected, false, new string[0], isOverride: true),
            new GeneratedMember("__peftWired", Accessibility.Private, false),
            new GeneratedMember("__peftCore", Accessibility.Private, true),
            new GeneratedMember("__peftTrainableMembers", Accessibility.Private, false),
            new GeneratedMember("__peftCoreOrThrow", Accessibility.Private, true),
            new GeneratedMember("PeftInfo", Accessibility.Public, false),
            new GeneratedMember("AdapterLayers", Accessibility.Public, true),
            new GeneratedMember("MergeAdapters", Accessibility.Public, true, new string[0]),
            new GeneratedMember("UnmergeAdapters", Accessibility.Public, true, new string[0]),
            new GeneratedMember("MergeAndUnload", Accessibility.Public, true, new string[0]),
            new GeneratedMember("SaveAdapters", Accessibility.Public, true, new[] { "string" }),
            new GeneratedMember("LoadAdapters", Accessibility.Public, true, new[] { "string" }),
            new GeneratedMember("SaveAdapter", Accessibility.Public, true, new[] { "string", "string" }),
            new GeneratedMember("LoadAdapter", Accessibility.Public, true, new[] { "string", "string" }),
            new GeneratedMember("DeleteAdapter", Accessibility.Public, true, new[] { "string" }),
            new GeneratedMember("MixedBatch", Accessibility.Public, true, new[] { "string[]" }),
            new GeneratedMember("SetActiveAdapters", Accessibility.Public, true, new[] { "string[]" }),
            new GeneratedMember("EnableAdapters", Accessibility.Public, true, new string[0]),
            new GeneratedMember("DisableAdapters", Accessibility.Public, true, new string[0]),
            new GeneratedMember("FreezeBaseModel", Accessibility.Public, true, new string[0]),
            new GeneratedMember("UnfreezeBaseModel", Accessibility.Public, true, new string[0]),
            new GeneratedMember("TrainableParameters", Accessibility.Public, true, new string[0]),
            new GeneratedMember("TrainableParameterCount", Accessibility.Public, true),
            new GeneratedMember("LoadBaseWeights", Accessibility.Public, true, new[] { "string", "global::Peft.Runtime.IO.BaseWeightOptions" }),
            new GeneratedMember("SaveMergedModel", Accessibility.Public, true, new[] { "string" }));
    }
}
