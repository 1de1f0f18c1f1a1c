using System;
using System.Collections.Generic;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// How <c>LoadBaseWeights</c> matches a checkpoint's keys to the model's base parameters. With no options, a
    /// checkpoint key matches the model's name for the same tensor with PEFT's <c>.base_layer</c> removed
    /// (<c>q_proj.weight</c> fills <c>q_proj.base_layer.weight</c>), every base tensor must be in the checkpoint and
    /// every checkpoint tensor must fill one.
    /// </summary>
    public sealed class BaseWeightOptions
    {
        /// <summary>
        /// A prefix that the checkpoint's keys carry and the model's names lack, removed before matching (for example
        /// <c>"model."</c> to load a <c>LlamaForCausalLM</c> checkpoint into a bare decoder). Keys without it are unexpected.
        /// </summary>
        public string? Prefix { get; init; }

        /// <summary>
        /// Maps a checkpoint key (after <see cref="Prefix"/> is removed) to the model's name for it (without
        /// <c>.base_layer</c>), or to <see langword="null"/> to skip the tensor. Runs on every key; return the key itself
        /// to keep it.
        /// </summary>
        public Func<string, string?>? Rename { get; init; }

        /// <summary>
        /// Model names (without <c>.base_layer</c>) that take another model name's checkpoint tensor when the checkpoint
        /// lacks their own, e.g. <c>{ ["lm_head.weight"] = "model.embed_tokens.weight" }</c> for a model whose output layer
        /// is a separate parameter but whose checkpoint was saved with tied embeddings. Parameters that are one tensor
        /// in the model (tied by sharing the parameter) need no entry: any of their names fills them all.
        /// </summary>
        public IReadOnlyDictionary<string, string>? Aliases { get; init; }

        /// <summary>
        /// When false, base tensors the checkpoint lacks keep their values and checkpoint tensors that fill nothing are
        /// ignored; shapes are still checked. Default true.
        /// </summary>
        public bool Strict { get; init; } = true;
    }
}
