namespace Peft.Generators.Tests
{
    /// <summary>The exact text the generator must write for each input in <see cref="Sources"/>.</summary>
    internal static class Expected
    {
        /// <summary>The generator's version, as its <c>[GeneratedCode]</c> attributes carry it (the generator assembly's version).</summary>
        public static readonly string Version = typeof(PeftGenerator).Assembly.GetName().Version!.ToString();

        /// <summary>
        /// The model-level API every <c>[PeftModel]</c> class gets, word for word, between its <c>PeftInfo</c> and its merges;
        /// written once here and placed, at its indentation, into <see cref="Block"/>, <see cref="NamedAdapters"/> and <see cref="Merged"/>.
        /// </summary>
        private static readonly string ModelApi = $$"""
                    /// <summary>Every adapter layer of the model by its module path (<c>blocks.0.q</c>), in tree order.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public global::System.Collections.Generic.IReadOnlyList<(string Path, global::Peft.Runtime.IAdapterLayer Layer)> AdapterLayers => __peftCoreOrThrow.AdapterLayers;

                    /// <summary>Folds the active adapters into the base weights (refusing NaN / Inf, naming the layer).</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void MergeAdapters() => __peftCoreOrThrow.MergeAdapters();

                    /// <summary>Undoes <c>MergeAdapters()</c>.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void UnmergeAdapters() => __peftCoreOrThrow.UnmergeAdapters();

                    /// <summary>Merges the active adapters and puts the plain base layers back in the model.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void MergeAndUnload() => __peftCoreOrThrow.MergeAndUnload();

                    /// <summary>Writes every adapter in Hugging Face PEFT's format (<c>adapter_config.json</c> and <c>adapter_model.safetensors</c>).</summary>
                    /// <param name="directory">The folder that receives the adapter <c>default</c>; any other adapter goes in a subfolder of its name.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void SaveAdapters(string directory) => __peftCoreOrThrow.SaveAdapters(directory);

                    /// <summary>Reads adapters written by <c>SaveAdapters</c> or by Hugging Face PEFT; on any mismatch the model is left unchanged.</summary>
                    /// <param name="directory">The folder to read.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void LoadAdapters(string directory) => __peftCoreOrThrow.LoadAdapters(directory);

                    /// <summary>Writes one adapter in Hugging Face PEFT's format straight into <paramref name="directory"/>, with the <c>[Trainable]</c> modules.</summary>
                    /// <param name="directory">The folder that receives the adapter's files, whatever its name.</param>
                    /// <param name="adapter">The adapter to write.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void SaveAdapter(string directory, string adapter) => __peftCoreOrThrow.SaveAdapter(directory, adapter);

                    /// <summary>Reads one adapter's files from <paramref name="directory"/> into the model's adapter <paramref name="adapter"/>; on any mismatch the model is left unchanged.</summary>
                    /// <param name="directory">The folder holding the adapter's files.</param>
                    /// <param name="adapter">The model's adapter that receives them.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void LoadAdapter(string directory, string adapter) => __peftCoreOrThrow.LoadAdapter(directory, adapter);

                    /// <summary>Removes an adapter and its parameters from every layer (refused while it is merged).</summary>
                    /// <param name="adapter">The adapter to remove.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void DeleteAdapter(string adapter) => __peftCoreOrThrow.DeleteAdapter(adapter);

                    /// <summary>Selects the adapters applied in <c>forward</c> on every layer that has them.</summary>
                    /// <param name="names">The adapter names, in the order they apply.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void SetActiveAdapters(params string[] names) => __peftCoreOrThrow.SetActiveAdapters(names);

                    /// <summary>Applies the active adapters again after <c>DisableAdapters()</c>.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void EnableAdapters() => __peftCoreOrThrow.EnableAdapters();

                    /// <summary>Makes <c>forward</c> return the base model's output.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void DisableAdapters() => __peftCoreOrThrow.DisableAdapters();

                    /// <summary>Until the returned scope is disposed, row i of each batch goes through adapter <paramref name="adapterPerRow"/>[i] alone (<c>"__base__"</c> for the base model), one sub-batch per adapter.</summary>
                    /// <param name="adapterPerRow">One adapter name per row of the batch (the first dimension of each adapter layer's input).</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public global::System.IDisposable MixedBatch(params string[] adapterPerRow) => __peftCoreOrThrow.MixedBatch(adapterPerRow);

                    /// <summary>Freezes every parameter but the adapters' and the <c>[Trainable]</c> modules' (what <c>RegisterComponents()</c> did).</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void FreezeBaseModel() => __peftCoreOrThrow.FreezeBaseModel();

                    /// <summary>Makes every parameter trainable: to pre-train or fully fine-tune the base model, usually with <c>DisableAdapters()</c>.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void UnfreezeBaseModel() => __peftCoreOrThrow.UnfreezeBaseModel();

                    /// <summary>The parameters that train: adapters and <c>[Trainable]</c> modules.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public global::System.Collections.Generic.IEnumerable<global::TorchSharp.Modules.Parameter> TrainableParameters() => __peftCoreOrThrow.TrainableParameters();

                    /// <summary>The number of trainable scalars.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public long TrainableParameterCount => __peftCoreOrThrow.TrainableParameterCount;

                    /// <summary>Loads the base model's weights from a Hugging Face checkpoint (a <c>.safetensors</c> file, a sharded index, or a folder holding either), checking every key first.</summary>
                    /// <param name="fileOrDirectory">The checkpoint: <c>model.safetensors</c>, <c>model.safetensors.index.json</c>, or their folder.</param>
                    /// <param name="options">Prefix, renames and aliases for the checkpoint's keys; null for the defaults.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void LoadBaseWeights(string fileOrDirectory, global::Peft.Runtime.IO.BaseWeightOptions? options = null) => __peftCoreOrThrow.LoadBaseWeights(fileOrDirectory, options);

                    /// <summary>Writes the adapted model (active adapters folded in) as a plain checkpoint under the loaded checkpoint's names, with its <c>config.json</c>.</summary>
                    /// <param name="directory">The folder that receives <c>model.safetensors</c>.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void SaveMergedModel(string directory) => __peftCoreOrThrow.SaveMergedModel(directory);

                    /// <summary>EVA's data-driven init of the adapters declared with <c>LoRAInit.Eva</c>: forward passes only, an incremental PCA of each layer's inputs, A from the top components, B = 0, ranks redistributed by explained variance.</summary>
                    /// <param name="batches">Model inputs; cycled until every layer has converged.</param>
                    /// <param name="options">EVA's settings; null for PEFT's defaults.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void InitializeEva(global::System.Collections.Generic.IEnumerable<global::TorchSharp.torch.Tensor> batches, global::Peft.Runtime.EvaOptions? options = null) => __peftCoreOrThrow.InitializeEva(batches, options);

                    /// <summary>The per-step rank allocation of adaptive-rank adapters (AdaLoRA, IncreLoRA): call it after <c>optimizer.step()</c>, before the gradients are zeroed (<c>AdapterTrainer</c> does).</summary>
                    /// <param name="step">The 0-based training step.</param>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void UpdateAndAllocate(int step) => __peftCoreOrThrow.UpdateAndAllocate(step);
            """;

        public static readonly string Block = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class Block : global::Peft.Runtime.IPeftComponent, global::Peft.Runtime.IPeftModel
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private global::Peft.Runtime.PeftModelCore? __peftCore;

                    /// <summary>Wires the PeftDsl adapters, registers the components, then freezes everything but adapters and [Trainable] modules.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.q = global::Peft.Runtime.Adapters.LoRA.Wrap(this.q, "Demo.Block.q", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4, Alpha = 8d });
                            this.v = global::Peft.Runtime.Adapters.LoRA.Wrap(this.v, "Demo.Block.v", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4, Alpha = 8d, Dropout = 0.05d });
                        }
                        base.RegisterComponents();
                        __peftCore ??= global::Peft.Runtime.PeftModelCore.Attach(this, PeftInfo);
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = new string[] { "head" };

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.q is global::Peft.Runtime.IAdapterLayer __q) { this.q = __q.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "q", this.q); }
                        if (this.v is global::Peft.Runtime.IAdapterLayer __v) { this.v = __v.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "v", this.v); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.Block",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("q", "LoRA", "default", "rank: 4, Alpha = 8", 512L, 512L),
                            new global::Peft.Runtime.AdapterSiteInfo("v", "LoRA", "default", "rank: 4, Alpha = 8, Dropout = 0.05", 512L, 512L),
                        },
                        __peftTrainableMembers,
                        new global::Peft.Runtime.PeftModelInfo[]
                        {
                            global::Demo.Attention.PeftInfo,
                        });

            {{ModelApi}}

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    private global::Peft.Runtime.PeftModelCore __peftCoreOrThrow => __peftCore ?? throw new global::System.InvalidOperationException("Demo.Block: RegisterComponents() has not run, so no adapter is wired");
                }
            }
            """;

        public static readonly string Attention = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class Attention : global::Peft.Runtime.IPeftComponent
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;

                    /// <summary>Wires the PeftDsl adapters, then registers the components.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.k = global::Peft.Runtime.Adapters.LoRA.Wrap(this.k, "Demo.Attention.k", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 8, Init = global::Peft.LoRAInit.Gaussian, UseRsLora = true });
                        }
                        base.RegisterComponents();
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = global::System.Array.Empty<string>();

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.k is global::Peft.Runtime.IAdapterLayer __k) { this.k = __k.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "k", this.k); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.Attention",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("k", "LoRA", "default", "rank: 8, Init = LoRAInit.Gaussian, UseRsLora = true", 64L, 128L),
                        },
                        __peftTrainableMembers,
                        global::System.Array.Empty<global::Peft.Runtime.PeftModelInfo>());
                }
            }
            """;

        public static readonly string Nested = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo.Deep
            {
                partial struct Holder
                {
                    partial class Outer
                    {
                        partial class Inner : global::Peft.Runtime.IPeftComponent
                        {
                            [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                            private bool __peftWired;

                            /// <summary>Wires the PeftDsl adapters, then registers the components.</summary>
                            [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                            [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                            protected override void RegisterComponents()
                            {
                                if (!__peftWired)
                                {
                                    __peftWired = true;
                                    this.proj = global::Peft.Runtime.Adapters.LoRA.Wrap(this.proj, "Demo.Deep.Holder.Outer.Inner.proj", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 2 });
                                }
                                base.RegisterComponents();
                            }

                            [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                            [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                            global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                            [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                            private static readonly string[] __peftTrainableMembers = global::System.Array.Empty<string>();

                            [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                            [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                            void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                            {
                                if (this.proj is global::Peft.Runtime.IAdapterLayer __proj) { this.proj = __proj.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "proj", this.proj); }
                            }

                            /// <summary>What the compiler saw of this class's adapters.</summary>
                            [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                            [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                            public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                                "Demo.Deep.Holder.Outer.Inner",
                                new global::Peft.Runtime.AdapterSiteInfo[]
                                {
                                    new global::Peft.Runtime.AdapterSiteInfo("proj", "LoRA", "default", "rank: 2", 16L, 8L),
                                },
                                __peftTrainableMembers,
                                global::System.Array.Empty<global::Peft.Runtime.PeftModelInfo>());
                        }
                    }
                }
            }
            """;

        public static readonly string Generic = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class Adapted<TInner> : global::Peft.Runtime.IPeftComponent
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;

                    /// <summary>Wires the PeftDsl adapters, then registers the components.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.Proj = global::Peft.Runtime.Adapters.LoRA.Wrap(this.Proj!, "Demo.Adapted<TInner>.Proj", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4, Alpha = 16d });
                        }
                        base.RegisterComponents();
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = new string[] { "inner" };

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.Proj is global::Peft.Runtime.IAdapterLayer __Proj) { this.Proj = __Proj.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "Proj", this.Proj); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.Adapted<TInner>",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("Proj", "LoRA", "default", "rank: 4, Alpha = 16", 32L, 32L),
                        },
                        __peftTrainableMembers,
                        global::System.Array.Empty<global::Peft.Runtime.PeftModelInfo>());
                }
            }
            """;

        public static readonly string ClassTargets = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class SelfAttention : global::Peft.Runtime.IPeftComponent
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;

                    /// <summary>Wires the PeftDsl adapters, then registers the components.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.q = global::Peft.Runtime.Adapters.LoRA.Wrap(this.q, "Demo.SelfAttention.q", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 8, Alpha = 16d });
                            this.v = global::Peft.Runtime.Adapters.LoRA.Wrap(this.v, "Demo.SelfAttention.v", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 8, Alpha = 16d });
                            this.o = global::Peft.Runtime.Adapters.Bone.Wrap(this.o, "Demo.SelfAttention.o", "default", new global::Peft.Runtime.Adapters.BoneOptions { Block = 64, Variant = global::Peft.BoneVariant.Bat });
                        }
                        base.RegisterComponents();
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = global::System.Array.Empty<string>();

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.q is global::Peft.Runtime.IAdapterLayer __q) { this.q = __q.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "q", this.q); }
                        if (this.v is global::Peft.Runtime.IAdapterLayer __v) { this.v = __v.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "value", this.v); }
                        if (this.o is global::Peft.Runtime.IAdapterLayer __o) { this.o = __o.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "o", this.o); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.SelfAttention",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("q", "LoRA", "default", "rank: 8, Alpha = 16", 256L, 256L),
                            new global::Peft.Runtime.AdapterSiteInfo("value", "LoRA", "default", "rank: 8, Alpha = 16", 256L, 128L),
                            new global::Peft.Runtime.AdapterSiteInfo("o", "Bone", "default", "block: 64, Variant = BoneVariant.Bat", 128L, 256L),
                        },
                        __peftTrainableMembers,
                        global::System.Array.Empty<global::Peft.Runtime.PeftModelInfo>());
                }
            }
            """;

        public static readonly string NamedAdapters = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class MultiTask : global::Peft.Runtime.IPeftComponent, global::Peft.Runtime.IPeftModel
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private global::Peft.Runtime.PeftModelCore? __peftCore;

                    /// <summary>Wires the PeftDsl adapters, registers the components, then freezes everything but adapters and [Trainable] modules.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.q = global::Peft.Runtime.Adapters.LoRA.Wrap(this.q, "Demo.MultiTask.q", "math", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4 });
                            this.q = global::Peft.Runtime.Adapters.LoRA.Wrap(this.q, "Demo.MultiTask.q", "code", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 8, Alpha = 16d });
                        }
                        base.RegisterComponents();
                        __peftCore ??= global::Peft.Runtime.PeftModelCore.Attach(this, PeftInfo);
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = global::System.Array.Empty<string>();

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.q is global::Peft.Runtime.IAdapterLayer __q) { this.q = __q.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "q", this.q); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.MultiTask",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("q", "LoRA", "math", "rank: 4", 128L, 128L),
                            new global::Peft.Runtime.AdapterSiteInfo("q", "LoRA", "code", "rank: 8, Alpha = 16", 128L, 128L),
                        },
                        __peftTrainableMembers,
                        global::System.Array.Empty<global::Peft.Runtime.PeftModelInfo>());

            {{ModelApi}}

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    private global::Peft.Runtime.PeftModelCore __peftCoreOrThrow => __peftCore ?? throw new global::System.InvalidOperationException("Demo.MultiTask: RegisterComponents() has not run, so no adapter is wired");
                }
            }
            """;

        public static readonly string UnknownShape = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class Wrapper : global::Peft.Runtime.IPeftComponent
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;

                    /// <summary>Wires the PeftDsl adapters, then registers the components.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.layer = global::Peft.Runtime.Adapters.LoRA.Wrap(this.layer, "Demo.Wrapper.layer", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 2, Dropout = 0.001d });
                            this.scaled = global::Peft.Runtime.Adapters.LoRA.Wrap(this.scaled, "Demo.Wrapper.scaled", "default", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 2 });
                        }
                        base.RegisterComponents();
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = global::System.Array.Empty<string>();

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.layer is global::Peft.Runtime.IAdapterLayer __layer) { this.layer = __layer.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "layer", this.layer); }
                        if (this.scaled is global::Peft.Runtime.IAdapterLayer __scaled) { this.scaled = __scaled.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "scaled", this.scaled); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.Wrapper",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("layer", "LoRA", "default", "rank: 2, Dropout = 1e-3", null, null),
                            new global::Peft.Runtime.AdapterSiteInfo("scaled", "LoRA", "default", "rank: 2", null, null),
                        },
                        __peftTrainableMembers,
                        global::System.Array.Empty<global::Peft.Runtime.PeftModelInfo>());
                }
            }
            """;

        public static readonly string Merged = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class Merged : global::Peft.Runtime.IPeftComponent, global::Peft.Runtime.IPeftModel
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private global::Peft.Runtime.PeftModelCore? __peftCore;

                    /// <summary>Wires the PeftDsl adapters, registers the components, then freezes everything but adapters and [Trainable] modules.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.q = global::Peft.Runtime.Adapters.LoRA.Wrap(this.q, "Demo.Merged.q", "math", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4 });
                            this.q = global::Peft.Runtime.Adapters.LoRA.Wrap(this.q, "Demo.Merged.q", "code", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 8, Alpha = 16d });
                        }
                        base.RegisterComponents();
                        __peftCore ??= global::Peft.Runtime.PeftModelCore.Attach(this, PeftInfo);
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = global::System.Array.Empty<string>();

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.q is global::Peft.Runtime.IAdapterLayer __q) { this.q = __q.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "q", this.q); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.Merged",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("q", "LoRA", "math", "rank: 4", 128L, 128L),
                            new global::Peft.Runtime.AdapterSiteInfo("q", "LoRA", "code", "rank: 8, Alpha = 16", 128L, 128L),
                        },
                        __peftTrainableMembers,
                        new global::Peft.Runtime.PeftModelInfo[]
                        {
                            global::Demo.Experts.PeftInfo,
                        });

            {{ModelApi}}

                    /// <summary>Creates the adapter <c>math_code</c> from <c>math</c>, <c>code</c> (weights 0.5, 0.5; density 0.5) on every adapter layer of the model that holds them all, as <c>[MergeWith]</c> declares: TIES (trim, elect sign, agreeing mean) re-factorised by truncated SVD. The result is a LoRA adapter (scaling 1), inactive until selected.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void MergeMathCode() => __peftCoreOrThrow.MergeAdapter(new global::Peft.Runtime.Merging.MergeSpec("math_code", new string[] { "math", "code" }) { Method = global::Peft.MergeMethod.Ties, Weights = new double[] { 0.5d, 0.5d }, Density = 0.5d });

                    /// <summary>Creates the adapter <c>q-svd</c> from <c>math</c>, <c>code</c> (rank 6) on <c>q</c>, as <c>[MergeWith]</c> declares: Σ wᵢ·ΔWᵢ re-factorised by truncated SVD. The result is a LoRA adapter (scaling 1), inactive until selected.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void MergeQSvd() => __peftCoreOrThrow.MergeAdapter(new global::Peft.Runtime.Merging.MergeSpec("q-svd", new string[] { "math", "code" }) { Method = global::Peft.MergeMethod.Svd, Rank = 6 }, "q");

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    private global::Peft.Runtime.PeftModelCore __peftCoreOrThrow => __peftCore ?? throw new global::System.InvalidOperationException("Demo.Merged: RegisterComponents() has not run, so no adapter is wired");
                }
            }
            """;

        public static readonly string Experts = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace Demo
            {
                partial class Experts : global::Peft.Runtime.IPeftComponent
                {
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private bool __peftWired;

                    /// <summary>Wires the PeftDsl adapters, then registers the components.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    protected override void RegisterComponents()
                    {
                        if (!__peftWired)
                        {
                            __peftWired = true;
                            this.up = global::Peft.Runtime.Adapters.LoRA.Wrap(this.up, "Demo.Experts.up", "math", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4 });
                            this.up = global::Peft.Runtime.Adapters.LoRA.Wrap(this.up, "Demo.Experts.up", "code", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4 });
                            this.down = global::Peft.Runtime.Adapters.LoRA.Wrap(this.down, "Demo.Experts.down", "math", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 4 });
                        }
                        base.RegisterComponents();
                    }

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    global::System.Collections.Generic.IReadOnlyList<string> global::Peft.Runtime.IPeftComponent.TrainableMembers => __peftTrainableMembers;

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    private static readonly string[] __peftTrainableMembers = global::System.Array.Empty<string>();

                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    void global::Peft.Runtime.IPeftComponent.UnloadAdapterLayers()
                    {
                        if (this.up is global::Peft.Runtime.IAdapterLayer __up) { this.up = __up.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "up", this.up); }
                        if (this.down is global::Peft.Runtime.IAdapterLayer __down) { this.down = __down.BaseLayer; global::Peft.Runtime.PeftModelCore.ReplaceSubmodule(this, "down", this.down); }
                    }

                    /// <summary>What the compiler saw of this class's adapters.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public static global::Peft.Runtime.PeftModelInfo PeftInfo { get; } = new global::Peft.Runtime.PeftModelInfo(
                        "Demo.Experts",
                        new global::Peft.Runtime.AdapterSiteInfo[]
                        {
                            new global::Peft.Runtime.AdapterSiteInfo("up", "LoRA", "math", "rank: 4", 128L, 64L),
                            new global::Peft.Runtime.AdapterSiteInfo("up", "LoRA", "code", "rank: 4", 128L, 64L),
                            new global::Peft.Runtime.AdapterSiteInfo("down", "LoRA", "math", "rank: 4", 64L, 128L),
                        },
                        __peftTrainableMembers,
                        global::System.Array.Empty<global::Peft.Runtime.PeftModelInfo>());

                    /// <summary>Creates the adapter <c>mixed</c> from <c>math</c>, <c>code</c> (density 0.7; seed 3) on this class's adapter layers that hold them all, as <c>[MergeWith]</c> declares: DARE (drop and rescale) then TIES, re-factorised by truncated SVD. The result is a LoRA adapter (scaling 1), inactive until selected.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void MergeMixed() => global::Peft.Runtime.Merging.AdapterMerger.AddMergedAdapter(this, new global::Peft.Runtime.Merging.MergeSpec("mixed", new string[] { "math", "code" }) { Method = global::Peft.MergeMethod.DareTies, Density = 0.7d, Seed = 3 }, "up");

                    /// <summary>Creates the adapter <c>double</c> from <c>math</c> (weights 2) on <c>down</c>, as <c>[MergeWith]</c> declares: exactly Σ wᵢ·ΔWᵢ (task arithmetic, kept low-rank by concatenation). The result is a LoRA adapter (scaling 1), inactive until selected.</summary>
                    [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                    [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                    public void MergeDouble() => global::Peft.Runtime.Merging.AdapterMerger.AddMergedAdapter(this, new global::Peft.Runtime.Merging.MergeSpec("double", new string[] { "math" }) { Method = global::Peft.MergeMethod.Linear, Weights = new double[] { 2d } }, "down");
                }
            }
            """;

        public static readonly string ModuleInitializer = $$"""
            // <auto-generated/>
            #pragma warning disable
            #nullable enable
            namespace PeftDsl.Generated
            {
                /// <summary>Loads libtorch before the first tensor is made, so annotated models work without setup.</summary>
                [global::System.CodeDom.Compiler.GeneratedCode("Peft.Generators", "{{Version}}")]
                [global::System.Diagnostics.CodeAnalysis.ExcludeFromCodeCoverage]
                internal static class PeftModuleInitializer
                {
                    /// <summary>Runs the PeftDsl runtime's native bootstrap when this assembly loads (idempotent).</summary>
                    [global::System.Runtime.CompilerServices.ModuleInitializer]
                    internal static void Initialize() => global::Peft.Runtime.Native.TorchNative.EnsureLoaded();
                }
            }
            """;
    }
}
