namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one VeRA adapter, as <c>[VeRA]</c> declares them (the same defaults).</summary>
    public sealed record VeRAOptions
    {
        /// <summary>The rank r of the shared projections (PEFT's <c>r</c>; PEFT's default 256).</summary>
        public int Rank { get; init; } = 256;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>vera_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>The seed of the CPU generator that draws the projections (PEFT's <c>projection_prng_key</c>).</summary>
        public int ProjectionSeed { get; init; }
        /// <summary>Whether saved files hold the projections (PEFT's <c>save_projection</c>); without them they are redrawn from the seed on load.</summary>
        public bool SaveProjection { get; init; } = true;
    }
}
