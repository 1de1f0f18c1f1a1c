using System.Linq;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Testing;
using Xunit;

namespace Peft.Generators.Tests
{
    /// <summary>
    /// The exact generated text for representative classes; each output must also compile, with no error anywhere
    /// and no warning in generated code, against .NET 10, TorchSharp, Peft.Dsl and Peft.Runtime.
    /// </summary>
    public class ExpectedSourceTests
    {
        private const string ModuleInitializerHint = "PeftDsl.ModuleInitializer.g.cs";

        [Fact]
        public void Block_wires_adapters_lists_trainable_members_and_components()
        {
            Verify(new[] { Sources.Block, Sources.Attention },
                ("Demo.Block.Peft.g.cs", Expected.Block),
                ("Demo.Attention.Peft.g.cs", Expected.Attention),
                (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Fact]
        public void Nested_class_is_wrapped_in_its_partial_containing_types()
        {
            Verify(new[] { Sources.Nested },
                ("Demo.Deep.Holder.Outer.Inner.Peft.g.cs", Expected.Nested),
                (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Fact]
        public void Generic_class_keeps_its_type_parameters()
        {
            Verify(new[] { Sources.Generic },
                ("Demo.Adapted`1.Peft.g.cs", Expected.Generic),
                (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Fact]
        public void Class_level_targets_apply_to_the_named_members_only()
        {
            Verify(new[] { Sources.ClassTargets },
                ("Demo.SelfAttention.Peft.g.cs", Expected.ClassTargets),
                (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Fact]
        public void Two_named_adapters_on_one_field_wrap_in_order()
        {
            Verify(new[] { Sources.NamedAdapters },
                ("Demo.MultiTask.Peft.g.cs", Expected.NamedAdapters),
                (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Fact]
        public void MergeWith_gives_one_Merge_method_each_and_skips_invalid_ones()
        {
            // Skipped: weights that do not match the adapters, a name whose method would clash with MergeAdapters(),
            // and, on a class that is not the root, adapters none of its own layers hold.
            Verify(new[] { Sources.Merges },
                ("Demo.Merged.Peft.g.cs", Expected.Merged),
                ("Demo.Experts.Peft.g.cs", Expected.Experts),
                (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Theory]
        [InlineData("ab", "MergeAb")]
        [InlineData("math_code", "MergeMathCode")]
        [InlineData("half", "MergeHalf")]
        [InlineData("q-svd v2", "MergeQSvdV2")]
        [InlineData("_", null)]
        [InlineData("", null)]
        public void Merge_method_names_are_PascalCase(string name, string? expected)
        {
            Assert.Equal(expected, Parse.MergeParser.MethodNameFor(name));
        }

        [Fact]
        public void Shapes_the_compiler_cannot_see_are_null()
        {
            Verify(new[] { Sources.UnknownShape },
                ("Demo.Wrapper.Peft.g.cs", Expected.UnknownShape),
                (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Fact]
        public void Module_initializer_is_emitted_once_without_annotated_classes()
        {
            Verify(new[] { Sources.NoAnnotations }, (ModuleInitializerHint, Expected.ModuleInitializer));
        }

        [Fact]
        public void No_module_initializer_without_the_runtime()
        {
            var compilation = Harness.Compile(new[] { Sources.NoAnnotations }, references: Harness.ReferencesWithoutRuntime);
            var (result, _) = Harness.Run(compilation);
            Assert.Empty(result.GeneratedSources);
        }

        [Fact]
        public void Same_input_gives_byte_identical_output()
        {
            var first = Harness.Run(Harness.Compile(Sources.Block, Sources.Attention)).Result.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString()));
            var second = Harness.Run(Harness.Compile(Sources.Attention, Sources.Block)).Result.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString()));
            Assert.Equal(first.OrderBy(s => s.HintName), second.OrderBy(s => s.HintName));
        }

        /// <summary>The same check through Microsoft.CodeAnalysis.Testing, as the analyzer tests will use it.</summary>
        [Fact]
        public async Task Testing_library_sees_the_same_block()
        {
            var test = new CSharpSourceGeneratorTest<PeftGenerator, DefaultVerifier>
            {
                ReferenceAssemblies = new ReferenceAssemblies("net10.0"),
            };
            test.TestState.Sources.Add(Sources.Block);
            test.TestState.Sources.Add(Sources.Attention);
            test.TestState.AdditionalReferences.AddRange(Harness.References);
            test.TestState.GeneratedSources.Add((typeof(PeftGenerator), "Demo.Block.Peft.g.cs", Expected.Block + "\n"));
            test.TestState.GeneratedSources.Add((typeof(PeftGenerator), "Demo.Attention.Peft.g.cs", Expected.Attention + "\n"));
            test.TestState.GeneratedSources.Add((typeof(PeftGenerator), ModuleInitializerHint, Expected.ModuleInitializer + "\n"));
            await test.RunAsync();
        }

        private static void Verify(string[] sources, params (string HintName, string Text)[] expected)
        {
            var (result, output) = Harness.Run(Harness.Compile(sources));
            Assert.Equal(expected.Select(e => e.HintName).OrderBy(h => h), result.GeneratedSources.Select(s => s.HintName).OrderBy(h => h));
            foreach (var (hintName, text) in expected)
                Assert.Equal(Harness.Lf(text) + "\n", Harness.Generated(result, hintName));
            Harness.AssertCompilesCleanly(output, result);
        }
    }
}
