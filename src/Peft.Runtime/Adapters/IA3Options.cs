namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one (IA)³ adapter, as <c>[IA3]</c> declares them (the same defaults).</summary>
    public sealed record IA3Options
    {
        /// <summary>Scale the inputs (l of length in) instead of the outputs (l of length out); PEFT's <c>feedforward_modules</c>.</summary>
        public bool FeedForward { get; init; }
    }
}
