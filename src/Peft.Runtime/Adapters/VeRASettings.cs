using System.Text.Json.Nodes;
using Peft.Runtime.IO;

namespace Peft.Runtime.Adapters
{
    /// <summary>A VeRA adapter's entry in PEFT's <c>VeraConfig</c> (which has no per-layer patterns: one rank for the adapter).</summary>
    /// <param name="Rank">PEFT's <c>r</c>.</param>
    /// <param name="ProjectionSeed">PEFT's <c>projection_prng_key</c>.</param>
    /// <param name="SaveProjection">PEFT's <c>save_projection</c>: whether the file holds <c>base_model.vera_A</c> / <c>vera_B</c>.</param>
    /// <param name="Dropout">PEFT's <c>vera_dropout</c>.</param>
    /// <param name="InitialLambdaD">PEFT's <c>d_initial</c>, the value λ_d starts at.</param>
    public sealed record VeRASettings(int Rank, int ProjectionSeed, bool SaveProjection, double Dropout, double InitialLambdaD) : AdapterSettings
    {
        /// <inheritdoc />
        public override string PeftType => "VERA";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["r"] = Rank;
            config["projection_prng_key"] = ProjectionSeed;
            config["save_projection"] = SaveProjection;
            config["vera_dropout"] = AdapterConfig.Float(Dropout);
            config["d_initial"] = AdapterConfig.Float(InitialLambdaD);
            config["fan_in_fan_out"] = false;
            config["bias"] = "none";
        }

        /// <summary>Reads the fields of a VeRA config (PEFT's defaults: r = 256, projection_prng_key = 0, save_projection = true).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int rank = checked((int)AdapterConfig.Number(config, "r", file, fallback: 256));
            int seed = checked((int)AdapterConfig.Number(config, "projection_prng_key", file, fallback: 0));
            bool save = config["save_projection"]?.GetValue<bool>() ?? true;
            double dropout = AdapterConfig.Number(config, "vera_dropout", file, fallback: 0);
            double dInitial = AdapterConfig.Number(config, "d_initial", file, fallback: 0.1);
            return new VeRASettings(rank, seed, save, dropout, dInitial);
        }
    }
}
