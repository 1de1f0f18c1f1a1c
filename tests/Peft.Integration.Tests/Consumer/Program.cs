using System;
using System.IO;
using System.Linq;
using Peft;
using Peft.Runtime;
using Peft.Runtime.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

// A LoRA fine-tune as a user of the Peft package writes it: annotate, train, save, load.
manual_seed(1);
var model = new Classifier();
IPeftModel api = model; // generated: the class implements the runtime's model API
Console.WriteLine($"sites seen by the compiler: {string.Join(", ", Classifier.PeftInfo.Sites.Select(s => s.Member + ":" + s.Method))}");
Console.WriteLine($"trainable: {api.TrainableParameterCount} of {model.parameters().Sum(p => p.numel())} parameters");

// A task the random base cannot do: labels from a fixed random teacher.
var x = randn(512, 32);
var teacher = randn(32, 4);
var y = x.matmul(teacher).argmax(1);

var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2)) { Name = "consumer fine-tune" };
model.train();
double first = trainer.Step(() => functional.cross_entropy(model.forward(x), y)), last = first;
for (int step = 2; step <= 150; step++) last = trainer.Step(() => functional.cross_entropy(model.forward(x), y));
Console.WriteLine($"loss: first {first:F4}, last {last:F4}");
if (!(last < 0.7 * first)) throw new InvalidOperationException("the fine-tune did not learn");

string dir = args.Length > 0 ? args[0] : "adapter";
model.eval();
model.SaveAdapters(dir);
Console.WriteLine($"saved: {string.Join(", ", Directory.GetFiles(dir).Select(Path.GetFileName).OrderBy(n => n))}");

manual_seed(1);
var fresh = new Classifier(); // the same base and initial adapter as `model` before training
fresh.eval();
bool differedBefore = !fresh.forward(x).allclose(model.forward(x));
fresh.LoadAdapters(dir);
bool equalAfter = fresh.forward(x).allclose(model.forward(x));
Console.WriteLine($"reloaded: differed before {differedBefore}, equal after {equalAfter}");
if (!differedBefore || !equalAfter) throw new InvalidOperationException("the reloaded adapter does not reproduce the model");
Console.WriteLine("consumer: ok");

[PeftModel]
public sealed partial class Classifier : Module<Tensor, Tensor>
{
    [LoRA(8, Alpha = 16, Dropout = 0.05)]
    private Module<Tensor, Tensor> hidden = Linear(32, 64);

    [Trainable]
    private Module<Tensor, Tensor> head = Linear(64, 4);

    public Classifier() : base(nameof(Classifier)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(functional.relu(hidden.forward(x)));
}
