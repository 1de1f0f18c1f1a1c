using System;

namespace Peft
{
    /// <summary>
    /// Marks the root of a model being fine-tuned. When its <c>RegisterComponents()</c> runs, every parameter of
    /// its module tree is frozen except the adapters' own and those of <see cref="TrainableAttribute"/> modules,
    /// and the class gains the model-level API: merge, unmerge, save and load in Hugging Face PEFT's format,
    /// adapter selection and the trainable parameters.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class PeftModelAttribute : Attribute
    {
        /// <summary>Written as <c>base_model_name_or_path</c> in <c>adapter_config.json</c>; optional.</summary>
        public string? BaseModelName { get; set; }

        /// <summary>Written as <c>task_type</c> in <c>adapter_config.json</c> (e.g. <c>"CAUSAL_LM"</c>); optional.</summary>
        public string? TaskType { get; set; }
    }
}
