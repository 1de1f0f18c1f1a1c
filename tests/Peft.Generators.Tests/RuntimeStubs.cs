using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace Peft.Generators.Tests
{
    /// <summary>
    /// Stand-ins, inside the test compilation only, for runtime and DSL types being written in parallel. Each is
    /// added only while the real assembly lacks it, so the tests keep compiling against the real ones later.
    /// </summary>
    internal static class RuntimeStubs
    {
        private static readonly (string MetadataName, bool InDsl, string Source)[] Stubs =
        {
            ("Peft.Runtime.PeftModelCore", false, """
                namespace Peft.Runtime
                {
                    public sealed class PeftModelCore
                    {
                        public static PeftModelCore Attach(global::TorchSharp.torch.nn.Module root, PeftModelInfo info) => new PeftModelCore();
                        public static void ReplaceSubmodule(global::TorchSharp.torch.nn.Module owner, string name, global::TorchSharp.torch.nn.Module replacement) { }
                        public global::System.Collections.Generic.IReadOnlyList<(string Path, IAdapterLayer Layer)> AdapterLayers => global::System.Array.Empty<(string, IAdapterLayer)>();
                        public void MergeAdapters() { }
                        public void UnmergeAdapters() { }
                        public void MergeAndUnload() { }
                        public void SaveAdapters(string directory) { }
                        public void LoadAdapters(string directory) { }
                        public void SetActiveAdapters(params string[] names) { }
                        public void EnableAdapters() { }
                        public void DisableAdapters() { }
                        public global::System.Collections.Generic.IEnumerable<global::TorchSharp.Modules.Parameter> TrainableParameters() => global::System.Array.Empty<global::TorchSharp.Modules.Parameter>();
                        public long TrainableParameterCount => 0;
                    }
                }
                """),
            ("Peft.Runtime.Adapters.LoRA", false, """
                namespace Peft.Runtime.Adapters
                {
                    public static class LoRA
                    {
                        public static global::TorchSharp.torch.nn.Module<global::TorchSharp.torch.Tensor, global::TorchSharp.torch.Tensor> Wrap(
                            global::TorchSharp.torch.nn.Module<global::TorchSharp.torch.Tensor, global::TorchSharp.torch.Tensor> layer, string path, string adapterName, LoRAOptions options) => layer;
                    }
                }
                """),
            ("Peft.Runtime.Adapters.LoRAOptions", false, """
                namespace Peft.Runtime.Adapters
                {
                    public sealed class LoRAOptions
                    {
                        public int Rank { get; set; }
                        public double Alpha { get; set; } = 8;
                        public double Dropout { get; set; }
                        public bool UseRsLora { get; set; }
                        public global::Peft.LoRAInit Init { get; set; }
                    }
                }
                """),
            // A second method through the generic rule: ctor parameter block -> Block, an enum option.
            ("Peft.BoneAttribute", true, """
                namespace Peft
                {
                    public enum BoneVariant { Bone = 0, Bat = 1 }

                    [global::System.AttributeUsage(global::System.AttributeTargets.Field | global::System.AttributeTargets.Property | global::System.AttributeTargets.Class, AllowMultiple = true)]
                    public sealed class BoneAttribute : global::System.Attribute
                    {
                        public BoneAttribute(int block) => Block = block;
                        public int Block { get; }
                        public BoneVariant Variant { get; set; }
                        public string Name { get; set; } = "default";
                        public string[]? Targets { get; set; }
                    }
                }
                """),
            ("Peft.Runtime.Adapters.Bone", false, """
                namespace Peft.Runtime.Adapters
                {
                    public static class Bone
                    {
                        public static global::TorchSharp.torch.nn.Module<global::TorchSharp.torch.Tensor, global::TorchSharp.torch.Tensor> Wrap(
                            global::TorchSharp.torch.nn.Module<global::TorchSharp.torch.Tensor, global::TorchSharp.torch.Tensor> layer, string path, string adapterName, BoneOptions options) => layer;
                    }

                    public sealed class BoneOptions
                    {
                        public int Block { get; set; }
                        public global::Peft.BoneVariant Variant { get; set; }
                    }
                }
                """),
        };

        public static string Source()
        {
            var text = new StringBuilder();
            foreach (var (metadataName, inDsl, source) in Stubs)
            {
                var assembly = inDsl ? typeof(Peft.LoRAAttribute).Assembly : typeof(Peft.Runtime.IPeftModel).Assembly;
                if (assembly.GetType(metadataName) is null) text.Append(source).Append('\n');
            }

            return text.ToString();
        }
    }
}
