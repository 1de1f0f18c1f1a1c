using System;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// The option checks many methods share, in the analyzers' words (PEFT004, PEFT005, PEFT007, PEFT021): one copy of each rule
    /// for every layer's <c>Validate</c>.
    /// </summary>
    internal static class AdapterChecks
    {
        /// <summary>PEFT004: a rank of at least 1. <c>what</c> is the method as messages name it (<c>LoRA</c>, <c>AdaLoRA target</c>).</summary>
        public static void RankAtLeastOne(string site, string what, int rank)
        {
            if (rank < 1)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.RankTooSmall, site, what, rank));
        }

        /// <summary>PEFT004 and PEFT005: 1 ≤ rank ≤ min(in, out).</summary>
        public static void RankWithinLayer(string site, string what, int rank, long inFeatures, long outFeatures)
        {
            RankAtLeastOne(site, what, rank);
            long max = Math.Min(inFeatures, outFeatures);
            if (rank > max)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.RankTooLarge, site, what, rank, inFeatures, outFeatures, max));
        }

        /// <summary>PEFT007: a dropout probability in [0, 1).</summary>
        public static void Dropout(string site, double dropout)
        {
            if (!(dropout >= 0 && dropout < 1))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.DropoutOutOfRange, site, dropout));
        }

        /// <summary>PEFT021: the importance EMAs' betas in (0, 1) (AdaLoRA, IncreLoRA).</summary>
        public static void Betas(string site, string method, double beta1, double beta2)
        {
            foreach (var (name, beta) in new[] { ("Beta1", beta1), ("Beta2", beta2) })
                if (!(beta > 0 && beta < 1))
                    throw new ArgumentException(PeftMessages.Format(PeftMessages.BetaOutOfRange, site, method, name, beta));
        }
    }
}
