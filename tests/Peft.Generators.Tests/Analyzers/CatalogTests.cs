using System;
using System.IO;
using System.Linq;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Peft.Generators.Diagnostics;
using Xunit;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>The catalog is whole: every ID in <see cref="DiagnosticIds"/> (not necessarily contiguous: ranges are handed out per branch), each with a descriptor, a release-tracking row and a documented section.</summary>
    public class CatalogTests
    {
        private static readonly DiagnosticDescriptor[] Descriptors = typeof(DiagnosticDescriptors)
            .GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.FieldType == typeof(DiagnosticDescriptor))
            .Select(f => (DiagnosticDescriptor)f.GetValue(null)!)
            .ToArray();

        private static readonly string[] Ids = typeof(DiagnosticIds)
            .GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral && f.GetRawConstantValue() is string value && value.StartsWith("PEFT", StringComparison.Ordinal))
            .Select(f => (string)f.GetRawConstantValue()!)
            .Where(id => id != DiagnosticIds.InternalError)
            .Distinct()
            .OrderBy(id => id, StringComparer.Ordinal)
            .ToArray();

        [Fact]
        public void The_first_wave_and_the_sara_ids_are_among_them()
        {
            foreach (int i in Enumerable.Range(1, 17)) Assert.Contains($"PEFT{i:000}", Ids);
            Assert.Contains("PEFT028", Ids);
            Assert.Contains("PEFT029", Ids);
            Assert.Contains("PEFT024", Ids);
        }

        /// <summary>The IDs that are warnings; every other is an error.</summary>
        private static readonly string[] WarningIds = { DiagnosticIds.RegisterComponentsNotCalled, DiagnosticIds.FullRankMerge };

        /// <summary>Reported by the generator, not by an analyzer: PEFT999, its internal error.</summary>
        private static readonly string[] GeneratorIds = { DiagnosticIds.InternalError };

        private static string Repository()
        {
            for (DirectoryInfo? directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "PeftDsl.sln"))) return directory.FullName;
            }

            throw new InvalidOperationException("PeftDsl.sln not found");
        }

        [Fact]
        public void Every_ID_has_descriptors_of_one_severity_category_and_help_link()
        {
            Assert.Equal(Ids.Concat(GeneratorIds), Descriptors.Select(d => d.Id).Distinct().OrderBy(id => id, StringComparer.Ordinal));
            foreach (var group in Descriptors.GroupBy(d => d.Id))
            {
                Assert.Single(group.Select(d => d.DefaultSeverity).Distinct());
                Assert.All(group, d => Assert.Equal(DiagnosticDescriptors.Category, d.Category));
                Assert.All(group, d => Assert.EndsWith("docs/diagnostics.md#" + d.Id.ToLowerInvariant(), d.HelpLinkUri));
                Assert.All(group, d => Assert.False(string.IsNullOrWhiteSpace(d.Title.ToString())));
            }

            Assert.All(Descriptors, d => Assert.Equal(WarningIds.Contains(d.Id) ? DiagnosticSeverity.Warning : DiagnosticSeverity.Error, d.DefaultSeverity));
        }

        [Fact]
        public void Every_descriptor_is_reported_by_some_analyzer()
        {
            var supported = PeftAnalyzerTest.Analyzers.SelectMany(a => a.SupportedDiagnostics).ToHashSet();
            Assert.All(Descriptors.Where(d => !GeneratorIds.Contains(d.Id)), d => Assert.Contains(d, supported));
            Assert.All(Descriptors.Where(d => GeneratorIds.Contains(d.Id)), d => Assert.DoesNotContain(d, supported));
        }

        [Fact]
        public void Every_ID_is_tracked_as_unshipped_and_documented()
        {
            string root = Repository();
            string unshipped = File.ReadAllText(Path.Combine(root, "src", "Peft.Generators", "AnalyzerReleases.Unshipped.md"));
            string docs = File.ReadAllText(Path.Combine(root, "docs", "diagnostics.md"));
            foreach (string id in Ids.Concat(GeneratorIds))
            {
                string severity = WarningIds.Contains(id) ? "Warning" : "Error";
                Assert.Contains($"{id} | {DiagnosticDescriptors.Category} | {severity} |", unshipped);
                Assert.Contains($"\n## {id}\n", docs.Replace("\r\n", "\n"));
            }
        }
    }
}
