using System;
using System.Linq;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Peft.Runtime.Adapters;
using TorchSharp;
using Xunit;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>
    /// A mistake the analyzer sees in constant shapes and the same mistake the runtime meets when the shape is known
    /// only at run time read the same, word for word.
    /// </summary>
    public class RuntimeWordingTests
    {
        private const string M = "Module<Tensor, Tensor>";

        static RuntimeWordingTests() => Peft.Runtime.Native.TorchNative.EnsureLoaded();

        private static async Task<string> AnalyzerMessage(string members, string id)
        {
            var diagnostics = await PeftAnalyzerTest.Run(
                $"namespace Demo {{ public partial class A : {M} {{ {members} public A() : base(\"a\") => RegisterComponents(); public override Tensor forward(Tensor x) => x; }} }}");
            return Assert.Single(diagnostics, d => d.Id == id).GetMessage(System.Globalization.CultureInfo.InvariantCulture);
        }

        private static string RuntimeMessage(Action wrap) => Assert.ThrowsAny<Exception>(wrap).Message;

        [Fact]
        public async Task PEFT005_rank_too_large()
        {
            string compile = await AnalyzerMessage($"[LoRA(128)] {M} q = Linear(64, 96);", "PEFT005");
            string run = RuntimeMessage(() => LoRA.Wrap(torch.nn.Linear(64, 96), "Demo.A.q", "default", new LoRAOptions { Rank = 128 }));
            Assert.Equal(run, compile);
        }

        [Fact]
        public async Task PEFT028_sara_rank_too_large()
        {
            string compile = await AnalyzerMessage($"[SaRA(6)] {M} q = Linear(12, 10);", "PEFT028");
            string run = RuntimeMessage(() => SaRA.Wrap(torch.nn.Linear(12, 10), "Demo.A.q", "default", new SaRAOptions { Rank = 6 }));
            Assert.Equal(run, compile);
        }

        [Fact]
        public async Task PEFT029_negative_option()
        {
            string compile = await AnalyzerMessage($"[SaRA(2, NuclearNormWeight = -0.25)] {M} q = Linear(12, 10);", "PEFT029");
            string run = RuntimeMessage(() => SaRA.Wrap(torch.nn.Linear(12, 10), "Demo.A.q", "default", new SaRAOptions { Rank = 2, NuclearNormWeight = -0.25 }));
            Assert.Equal(run, compile);
        }

        [Fact]
        public async Task PEFT006_bone_block_does_not_divide()
        {
            string compile = await AnalyzerMessage($"[Bone(64)] {M} v = Linear(100, 128);", "PEFT006");
            string run = RuntimeMessage(() => Bone.Wrap(torch.nn.Linear(100, 128), "Demo.A.v", "default", new BoneOptions { Block = 64 }));
            Assert.Equal(run, compile);
        }

        [Fact]
        public async Task PEFT006_bat_block_does_not_divide()
        {
            string compile = await AnalyzerMessage($"[Bone(4, Variant = BoneVariant.Bat)] {M} v = Linear(12, 10);", "PEFT006");
            string run = RuntimeMessage(() => Bone.Wrap(torch.nn.Linear(12, 10), "Demo.A.v", "default", new BoneOptions { Block = 4, Variant = BoneVariant.Bat }));
            Assert.Equal(run, compile);
        }

        [Fact]
        public async Task PEFT004_and_PEFT007_rank_and_dropout()
        {
            string rank = await AnalyzerMessage($"[LoRA(0)] {M} q = Linear(8, 8);", "PEFT004");
            Assert.Equal(RuntimeMessage(() => LoRA.Wrap(torch.nn.Linear(8, 8), "Demo.A.q", "default", new LoRAOptions { Rank = 0 })), rank);

            string dropout = await AnalyzerMessage($"[LoRA(4, Dropout = 1.5)] {M} q = Linear(8, 8);", "PEFT007");
            Assert.Equal(RuntimeMessage(() => LoRA.Wrap(torch.nn.Linear(8, 8), "Demo.A.q", "default", new LoRAOptions { Rank = 4, Dropout = 1.5 })), dropout);
        }

        [Fact]
        public async Task PEFT016_unsupported_layer()
        {
            string compile = await AnalyzerMessage($"[LoRA(4)] {M} c = Conv2d(3, 8, 3);", "PEFT016");
            string run = RuntimeMessage(() => LoRA.Wrap(torch.nn.Conv2d(3, 8, 3), "Demo.A.c", "default", new LoRAOptions { Rank = 4 }));
            Assert.Equal(run, compile);
        }

        [Fact]
        public async Task PEFT017_shared_config_mismatch()
        {
            string compile = await AnalyzerMessage($"[LoRA(4)] {M} q = Linear(8, 8); [LoRA(4, Dropout = 0.1)] {M} v = Linear(8, 8);", "PEFT017");
            var q = (Peft.Runtime.IAdapterLayer)LoRA.Wrap(torch.nn.Linear(8, 8), "Demo.A.q", "default", new LoRAOptions { Rank = 4 });
            var v = (Peft.Runtime.IAdapterLayer)LoRA.Wrap(torch.nn.Linear(8, 8), "Demo.A.v", "default", new LoRAOptions { Rank = 4, Dropout = 0.1 });
            string? run = Peft.Runtime.IO.AdapterConfig.SharedFieldConflict(new[] { ("Demo.A.q", q.Settings("default")), ("Demo.A.v", v.Settings("default")) }, "default");
            Assert.Equal(run, compile);

            string method = await AnalyzerMessage($"[LoRA(4)] {M} q = Linear(8, 8); [Bone(4)] {M} v = Linear(8, 8);", "PEFT017");
            var bone = (Peft.Runtime.IAdapterLayer)Bone.Wrap(torch.nn.Linear(8, 8), "Demo.A.v", "default", new BoneOptions { Block = 4 });
            Assert.Equal(Peft.Runtime.IO.AdapterConfig.SharedFieldConflict(new[] { ("Demo.A.q", q.Settings("default")), ("Demo.A.v", bone.Settings("default")) }, "default"), method);
        }
    }
}
