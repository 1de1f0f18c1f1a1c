using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>LyCORIS's two training-time dropouts, shared by LoHa and LoKr as PEFT's <c>LycorisLayer</c> has them.</summary>
    internal static class LycorisDropout
    {
        /// <summary>PEFT's <c>module_dropout</c>: whether the adapter is skipped for this forward (only in training).</summary>
        public static bool SkipModule(bool training, double moduleDropout) =>
            training && moduleDropout > 0 && !(rand(1).item<float>() > moduleDropout);

        /// <summary>
        /// PEFT's <c>rank_dropout</c>: zeroes each output row of <paramref name="delta"/> with probability
        /// <paramref name="rankDropout"/> and, when <paramref name="rescale"/>, divides by the fraction of rows kept.
        /// Where every row is dropped the update is zero (PEFT would divide by zero there).
        /// </summary>
        public static Tensor DropRows(Tensor delta, double rankDropout, bool rescale)
        {
            var keep = rand(delta.shape[0], device: delta.device).gt(rankDropout).to(delta.dtype);
            if (rescale) keep = keep.div(keep.mean().clamp_min(1e-12));
            return delta.mul(keep.unsqueeze(1));
        }
    }
}
