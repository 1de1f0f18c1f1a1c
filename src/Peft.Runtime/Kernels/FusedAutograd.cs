using System;
using System.Collections.Generic;
using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// The bookkeeping every fused autograd function of the runtime needs around TorchSharp 0.107's
    /// <c>SingleTensorFunction</c>: handles that forward creates and <c>apply</c> wraps again, the unused output buffer
    /// TorchSharp keeps per node, and gradient handles that libtorch copies after backward returns.
    /// </summary>
    /// <remarks>
    /// All state is per thread: <c>apply</c> runs forward synchronously on the calling thread, and libtorch's engine
    /// runs a CPU graph's backward on the thread that called <c>backward</c>.
    /// </remarks>
    internal static class FusedAutograd
    {
        private static readonly FieldInfo? ContextNodeField =
            typeof(torch.autograd.AutogradContext).GetField("_node", BindingFlags.NonPublic | BindingFlags.Instance);

        // Looked up on the node's runtime type (the field is declared on a subclass of _node's type), once.
        private static (Type NodeType, FieldInfo? Field)? _outputCacheField;

        [ThreadStatic] private static List<Tensor>? _forwardTemporaries;
        [ThreadStatic] private static torch.autograd.AutogradContext? _forwardContext;
        [ThreadStatic] private static List<Tensor>? _returnedGradients;

        /// <summary>
        /// Runs <paramref name="apply"/> (a function's <c>apply</c>), then frees what its forward registered with
        /// <see cref="Forwarded"/> and TorchSharp's output cache of the new node. Returns the output and whether the
        /// cache could be released.
        /// </summary>
        internal static (Tensor Output, bool OutputCacheReleased) Run(Func<Tensor> apply)
        {
            ReleaseReturnedGradients();
            var temporaries = _forwardTemporaries = new List<Tensor>();
            try
            {
                var output = apply();
                bool released = _forwardContext is { } ctx && ReleaseOutputCache(ctx);
                return (output, released);
            }
            finally
            {
                foreach (var t in temporaries) t.Dispose();
                _forwardTemporaries = null;
                _forwardContext = null;
            }
        }

        /// <summary>
        /// Called by forward: <paramref name="ctx"/> is the new node's context (its materialisation of missing output
        /// gradients is turned off: every fused backward handles a missing gradient), and <paramref name="handles"/> are
        /// tensors forward created whose managed handles are no longer needed once <c>apply</c> has wrapped the output
        /// and saved its variables (both hold their own references).
        /// </summary>
        internal static void Forwarded(torch.autograd.AutogradContext ctx, params Tensor?[] handles)
        {
            ctx.set_materialize_grads(false);
            _forwardContext = ctx;
            var temporaries = _forwardTemporaries;
            foreach (var t in handles)
                if (t is not null)
                {
                    if (temporaries is null) t.Dispose(); // apply called without Run: nothing else would free it
                    else temporaries.Add(t);
                }
        }

        /// <summary>Releases the handles of gradients handed to libtorch by an earlier backward on this thread.</summary>
        internal static void ReleaseReturnedGradients()
        {
            var returned = _returnedGradients;
            if (returned is null || returned.Count == 0) return;
            foreach (var t in returned) t.Dispose();
            returned.Clear();
        }

        /// <summary>
        /// What every fused backward does around its arithmetic: no gradients for a missing upstream gradient; otherwise
        /// <paramref name="compute"/> fills <paramref name="count"/> gradients inside a dispose scope, they are handed back
        /// (<see cref="Return"/>), and <paramref name="gradOutput"/>'s handle is released unless it is itself one of them
        /// (passed straight through). <paramref name="compute"/> must not throw: an exception cannot cross libtorch's
        /// engine back to the caller in TorchSharp 0.107 (the process would end).
        /// </summary>
        internal static List<Tensor> Backward(Tensor gradOutput, int count, Action<Tensor?[]> compute)
        {
            var grads = new Tensor?[count];
            if (gradOutput is null || gradOutput.IsInvalid) return new List<Tensor>(grads!);
            ReleaseReturnedGradients();
            List<Tensor> result;
            using (var scope = NewDisposeScope())
            {
                compute(grads);
                result = Return(grads, gradOutput, scope);
            }
            foreach (var t in grads)
                if (ReferenceEquals(t, gradOutput)) return result;
            gradOutput.Dispose();
            return result;
        }

        /// <summary>
        /// Hands <paramref name="grads"/> back from a backward whose temporaries live in <paramref name="scope"/>: each
        /// gradient is detached from the scope and its handle released on this thread's next call (libtorch copies the
        /// handles as soon as backward returns), rather than left to the finalizer, so its memory is not held.
        /// <paramref name="gradOutput"/> itself may be among them (a gradient passed straight through).
        /// </summary>
        internal static List<Tensor> Return(Tensor?[] grads, Tensor gradOutput, DisposeScope scope)
        {
            var returned = _returnedGradients ??= new List<Tensor>();
            foreach (var t in grads)
                if (t is not null)
                {
                    if (!ReferenceEquals(t, gradOutput)) scope.Detach(t);
                    returned.Add(t);
                }
            return new List<Tensor>(grads!);
        }

        /// <summary>Bytes of <paramref name="t"/>'s elements.</summary>
        internal static long Bytes(Tensor? t) => t is null ? 0 : t.numel() * t.element_size();

        // TorchSharp 0.107's Node keeps an empty_like of every output, to materialise missing output gradients with
        // zeros, for as long as the graph lives: an [n, out] buffer per call. Fused functions turn materialisation off,
        // so that cache is dead weight: release it. Returns whether it could (false if TorchSharp renamed the fields).
        private static bool ReleaseOutputCache(torch.autograd.AutogradContext ctx)
        {
            var node = ContextNodeField?.GetValue(ctx);
            if (node is null) return false;
            var known = _outputCacheField;
            if (known is null || known.Value.NodeType != node.GetType())
                _outputCacheField = known = (node.GetType(), node.GetType().GetField("_outputCache", BindingFlags.NonPublic | BindingFlags.Instance));
            if (known.Value.Field?.GetValue(node) is not List<Tensor> cache) return false;
            foreach (var t in cache) t?.Dispose();
            cache.Clear();
            return true;
        }
    }
}
