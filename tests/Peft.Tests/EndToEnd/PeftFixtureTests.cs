using System;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using TorchSharp;
using Peft.Tests.SharedData;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

/// <summary>Adapters written by Hugging Face PEFT load onto TorchSharp models of the same shapes and merge exactly.</summary>
public sealed class PeftFixtureTests
{
    private static void LoadsAndMergesExactly(IPeftModel model, nn.Module<Tensor, Tensor> module, string fixture, int layers, long outFeatures, double scaling)
    {
        using var scope = NewDisposeScope();
        string dir = PeftFixtures.Adapter(fixture);
        model.LoadAdapters(dir);

        using var file = Safetensors.Read(Path.Combine(dir, "adapter_model.safetensors"));
        Assert.Equal(layers, model.AdapterLayers.Count);
        foreach (var (path, layer) in model.AdapterLayers)
        {
            var lora = (LoRALinear)layer;
            TensorAssert.Equal(file.Tensors[$"base_model.model.{path}.lora_A.weight"], lora.LoraA("default"));
            TensorAssert.Equal(file.Tensors[$"base_model.model.{path}.lora_B.weight"], lora.LoraB("default"));
            Assert.Equal(scaling, lora.Options("default").Scaling);
            Assert.Equal(outFeatures, lora.OutFeatures);
        }

        module.eval();
        var x = randn(3, 768);
        using var _ = no_grad();
        var perLayer = model.AdapterLayers.Select(l => ((nn.Module<Tensor, Tensor>)l.Layer).forward(x)).ToList();
        var before = module.forward(x);
        model.MergeAdapters();
        for (int i = 0; i < perLayer.Count; i++)
            TensorAssert.Close(perLayer[i], ((nn.Module<Tensor, Tensor>)model.AdapterLayers[i].Layer).forward(x), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(before, module.forward(x), rtol: 1e-4, atol: 1e-4);
    }

    [SharedDataFact(PeftFixtures.Folder)]
    public void DistilBertImdbLoraLoadsAndMerges()
    {
        manual_seed(11);
        var model = new DistilBertForSequenceClassification();
        var classifierBefore = model.named_parameters().First(p => p.name == "classifier.weight").parameter.detach().clone();
        LoadsAndMergesExactly(model, model, "distilbert-imdb-lora", layers: 12, outFeatures: 768, scaling: 16.0 / 8);
        using var file = Safetensors.Read(Path.Combine(PeftFixtures.Adapter("distilbert-imdb-lora"), "adapter_model.safetensors"));
        var classifier = model.named_parameters().First(p => p.name == "classifier.weight").parameter;
        TensorAssert.Equal(file.Tensors["base_model.model.classifier.weight"], classifier);
        Assert.False(TensorAssert.Same(classifier, classifierBefore));
    }

    [SharedDataFact(PeftFixtures.Folder)]
    public void Gpt2SeqClsLoraLoadsAndMerges()
    {
        manual_seed(12);
        var model = new Gpt2ForSequenceClassification();
        LoadsAndMergesExactly(model, model, "gpt2-seqcls-lora", layers: 12, outFeatures: 2304, scaling: 1.0);
    }

    [SharedDataFact(PeftFixtures.Folder)]
    public void AFixtureDoesNotLoadOntoAModelOfOtherShapes()
    {
        var model = new Block(); // q, v are Linear(32, 32) with rank 4: nothing in the DistilBERT file fits
        var ex = Assert.Throws<InvalidDataException>(() => model.LoadAdapters(PeftFixtures.Adapter("distilbert-imdb-lora")));
        Assert.Contains("adapter_config.json: layer 'q'", ex.Message);
        Assert.Contains("has rank 4; the file has rank 8", ex.Message);
    }

    [SharedDataFact(PeftFixtures.Folder)]
    public void SavingALoadedFixtureReproducesItsTensors()
    {
        string outDir = Path.Combine(Path.GetTempPath(), "peft-fixture-" + Guid.NewGuid().ToString("N"));
        try
        {
            var model = new DistilBertForSequenceClassification();
            model.LoadAdapters(PeftFixtures.Adapter("distilbert-imdb-lora"));
            model.SaveAdapters(outDir);
            using var original = Safetensors.Read(Path.Combine(PeftFixtures.Adapter("distilbert-imdb-lora"), "adapter_model.safetensors"));
            using var written = Safetensors.Read(Path.Combine(outDir, "adapter_model.safetensors"));
            Assert.Equal(original.Tensors.Keys.OrderBy(k => k, StringComparer.Ordinal), written.Tensors.Keys.OrderBy(k => k, StringComparer.Ordinal));
            foreach (var (key, tensor) in original.Tensors) TensorAssert.Equal(tensor, written.Tensors[key]);
            var config = AdapterConfig.Read(Path.Combine(outDir, "adapter_config.json"));
            Assert.Equal(16, (int)config["lora_alpha"]!);
            Assert.Equal("distilbert-base-uncased", (string)config["base_model_name_or_path"]!);
            Assert.Equal("SEQ_CLS", (string)config["task_type"]!);
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
        }
    }
}
