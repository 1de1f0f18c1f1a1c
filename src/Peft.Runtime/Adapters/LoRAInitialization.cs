using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// The inits of LoRA's factors that read the base weight (PEFT's <c>pissa_init</c> and <c>olora_init</c> in
    /// <c>tuners/lora/layer.py</c>). Each returns A [r, in], B [out, r] and the residual base weight W − s·B·A, all
    /// in the base weight's dtype, computed in float32 (float64 for a float64 weight).
    /// </summary>
    internal static class LoRAInitialization
    {
        /// <summary>Whether the init replaces the base weight by a residual.</summary>
        public static bool ChangesBaseWeight(LoRAInit init) => init is LoRAInit.PiSSA or LoRAInit.OLoRA;

        /// <summary>PiSSA: W = U·diag(S)·Vᵀ, S_r = S[:r] / s, A = diag(√S_r)·Vᵀ[:r], B = U[:, :r]·diag(√S_r).</summary>
        public static (Tensor A, Tensor B, Tensor Residual) PiSSA(Tensor weight, int rank, double scaling)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var w = Working(weight);
            var (u, s, vh) = linalg.svd(w, fullMatrices: false);
            var root = s.narrow(0, 0, rank).div(scaling).sqrt();
            var a = root.unsqueeze(1).mul(vh.narrow(0, 0, rank));
            var b = u.narrow(1, 0, rank).mul(root.unsqueeze(0));
            return Finish(weight, w, a, b, scaling);
        }

        /// <summary>OLoRA: W = Q·R (reduced), A = R[:r], B = Q[:, :r].</summary>
        public static (Tensor A, Tensor B, Tensor Residual) OLoRA(Tensor weight, int rank, double scaling)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var w = Working(weight);
            var (q, r) = linalg.qr(w);
            var a = r.narrow(0, 0, rank);
            var b = q.narrow(1, 0, rank);
            return Finish(weight, w, a, b, scaling);
        }

        private static Tensor Working(Tensor weight) => weight.detach().to(weight.dtype == float64 ? float64 : float32);

        private static (Tensor, Tensor, Tensor) Finish(Tensor weight, Tensor w, Tensor a, Tensor b, double scaling)
        {
            var residual = w.sub(b.matmul(a).mul(scaling));
            return (a.to(weight.dtype).contiguous().MoveToOuterDisposeScope(),
                    b.to(weight.dtype).contiguous().MoveToOuterDisposeScope(),
                    residual.to(weight.dtype).MoveToOuterDisposeScope());
        }

        /// <summary>PEFT's <c>init_lora_weights</c> value for an init.</summary>
        public static string ConfigValue(LoRAInit init) => init switch
        {
            LoRAInit.Gaussian => "gaussian",
            LoRAInit.PiSSA => "pissa",
            LoRAInit.OLoRA => "olora",
            _ => throw new ArgumentOutOfRangeException(nameof(init), init, "the default init is written as true"),
        };
    }
}
