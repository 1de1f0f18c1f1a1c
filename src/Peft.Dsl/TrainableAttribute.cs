using System;

namespace Peft
{
    /// <summary>
    /// A module trained in full and saved with the adapter (PEFT's <c>modules_to_save</c>), such as a new
    /// classification head. Its parameters stay trainable when the <see cref="PeftModelAttribute"/> root freezes
    /// the rest of the model, and are written under their own keys, e.g. <c>base_model.model.head.weight</c>.
    /// </summary>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = false)]
    public sealed class TrainableAttribute : Attribute
    {
    }
}
