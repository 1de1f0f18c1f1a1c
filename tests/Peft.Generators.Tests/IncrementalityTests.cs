using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace Peft.Generators.Tests
{
    /// <summary>An edit elsewhere must leave every step cached, and no step may hold compiler objects.</summary>
    public class IncrementalityTests
    {
        private static readonly string[] StepNames = typeof(TrackingNames)
            .GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral)
            .Select(f => (string)f.GetRawConstantValue()!)
            .ToArray();

        [Fact]
        public void Tracking_names_are_all_listed()
        {
            Assert.Equal(new[] { TrackingNames.ParseClass, TrackingNames.Classes, TrackingNames.ModuleInitializer }.OrderBy(n => n), StepNames.OrderBy(n => n));
        }

        [Fact]
        public void Unrelated_edit_keeps_every_step_and_output_cached()
        {
            CSharpCompilation compilation = Harness.Compile(Sources.Block, Sources.Attention, Sources.ClassTargets, Sources.Nested);
            GeneratorDriver driver = Harness.CreateDriver().RunGenerators(compilation);
            GeneratorRunResult first = driver.GetRunResult().Results.Single();
            Assert.Equal(5, first.GeneratedSources.Length);

            CSharpCompilation edited = compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText(
                "namespace Other { public class Unrelated { public int Value { get; set; } } }", Harness.ParseOptions, path: "Unrelated.cs"));
            driver = driver.RunGenerators(edited);
            GeneratorRunResult second = driver.GetRunResult().Results.Single();

            foreach (string name in StepNames)
            {
                Assert.True(second.TrackedSteps.TryGetValue(name, out var steps), $"step {name} did not run");
                foreach (IncrementalGeneratorRunStep step in steps)
                {
                    foreach (var (_, reason) in step.Outputs)
                        Assert.True(reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"{name}: {reason}");
                }
            }

            Assert.NotEmpty(second.TrackedOutputSteps);
            foreach (var (_, reason) in second.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs))
                Assert.Equal(IncrementalStepRunReason.Cached, reason);

            Assert.Equal(
                first.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString())),
                second.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString())));
        }

        [Fact]
        public void Editing_one_class_regenerates_that_class_only()
        {
            CSharpCompilation compilation = Harness.Compile(Sources.Block, Sources.Attention);
            GeneratorDriver driver = Harness.CreateDriver().RunGenerators(compilation);

            SyntaxTree old = compilation.SyntaxTrees.First();
            SyntaxTree changed = old.WithChangedText(Microsoft.CodeAnalysis.Text.SourceText.From(Sources.Block.Replace("Dropout = 0.05", "Dropout = 0.1")));
            driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, changed));
            GeneratorRunResult result = driver.GetRunResult().Results.Single();

            var reasons = result.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToList();
            Assert.Single(reasons, r => r == IncrementalStepRunReason.Modified);
            Assert.Contains("Dropout = 0.1d", Harness.Generated(result, "Demo.Block.Peft.g.cs"));
        }

        [Fact]
        public void Editing_a_MergeWith_regenerates_its_class_only()
        {
            CSharpCompilation compilation = Harness.Compile(Sources.Merges, Sources.Block, Sources.Attention);
            GeneratorDriver driver = Harness.CreateDriver().RunGenerators(compilation);

            SyntaxTree old = compilation.SyntaxTrees.First();
            SyntaxTree changed = old.WithChangedText(Microsoft.CodeAnalysis.Text.SourceText.From(Sources.Merges.Replace("Density = 0.5,", "Density = 0.25,")));
            driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, changed));
            GeneratorRunResult result = driver.GetRunResult().Results.Single();

            var reasons = result.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToList();
            Assert.Single(reasons, r => r == IncrementalStepRunReason.Modified);
            Assert.Contains("Density = 0.25d", Harness.Generated(result, "Demo.Merged.Peft.g.cs"));
        }

        [Fact]
        public void Step_outputs_hold_no_symbols_syntax_locations_or_compilations()
        {
            CSharpCompilation compilation = Harness.Compile(
                Sources.Block, Sources.Attention, Sources.Nested, Sources.Generic, Sources.ClassTargets, Sources.NamedAdapters, Sources.UnknownShape, Sources.Merges);
            GeneratorDriver driver = Harness.CreateDriver().RunGenerators(compilation);
            GeneratorRunResult result = driver.GetRunResult().Results.Single();

            int walked = 0;
            foreach (string name in StepNames)
            {
                foreach (IncrementalGeneratorRunStep step in result.TrackedSteps[name])
                {
                    foreach (var (value, _) in step.Outputs)
                    {
                        Walk(value, name, new HashSet<object>(ReferenceEqualityComparer.Instance));
                        walked++;
                    }
                }
            }

            Assert.True(walked > 10);
        }

        private static readonly Type[] Forbidden =
        {
            typeof(ISymbol), typeof(SyntaxNode), typeof(SyntaxToken), typeof(SyntaxTree), typeof(Location),
            typeof(Compilation), typeof(SemanticModel), typeof(AttributeData), typeof(SyntaxReference),
        };

        private static void Walk(object? value, string path, HashSet<object> seen)
        {
            if (value is null) return;
            Type type = value.GetType();
            Assert.False(Forbidden.Any(f => f.IsAssignableFrom(type)), $"{path} holds a {type.FullName}");
            if (type.IsPrimitive || type.IsEnum || value is string or decimal) return;
            if (!type.IsValueType && !seen.Add(value)) return;

            if (value is Array array)
            {
                int i = 0;
                foreach (object? item in array) Walk(item, $"{path}[{i++}]", seen);
                return;
            }

            for (Type? current = type; current is not null && current != typeof(object); current = current.BaseType)
            {
                foreach (FieldInfo field in current.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                    Walk(field.GetValue(value), $"{path}.{field.Name}", seen);
            }
        }
    }
}
