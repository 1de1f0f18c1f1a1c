using System.Collections.Generic;

namespace Peft.Runtime
{
    /// <summary>One adapter declaration as the compiler saw it.</summary>
    /// <param name="Member">The field or property name, e.g. <c>q</c>.</param>
    /// <param name="Method">The method, e.g. <c>LoRA</c>.</param>
    /// <param name="Adapter">The adapter name, e.g. <c>default</c>.</param>
    /// <param name="Options">The declared options, e.g. <c>rank: 8, Alpha = 16</c>, as written.</param>
    /// <param name="InFeatures">The layer's input size where it is a compile-time constant.</param>
    /// <param name="OutFeatures">The layer's output size where it is a compile-time constant.</param>
    public sealed record AdapterSiteInfo(string Member, string Method, string Adapter, string Options, long? InFeatures, long? OutFeatures);

    /// <summary>What the compiler saw of one class with PeftDsl attributes.</summary>
    /// <param name="TypeName">The class's full name.</param>
    /// <param name="Sites">The adapter declarations on the class's own members.</param>
    /// <param name="TrainableMembers">The class's <c>[Trainable]</c> members.</param>
    /// <param name="Components">The same for annotated classes its members are typed with, where the compiler can see them.</param>
    public sealed record PeftModelInfo(
        string TypeName,
        IReadOnlyList<AdapterSiteInfo> Sites,
        IReadOnlyList<string> TrainableMembers,
        IReadOnlyList<PeftModelInfo> Components)
    {
        /// <summary><c>[PeftModel(BaseModelName = ...)]</c>, written as <c>base_model_name_or_path</c>.</summary>
        public string? BaseModelName { get; init; }

        /// <summary><c>[PeftModel(TaskType = ...)]</c>, written as <c>task_type</c>.</summary>
        public string? TaskType { get; init; }
    }
}
