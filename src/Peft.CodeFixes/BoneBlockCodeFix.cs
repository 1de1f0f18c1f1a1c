using System.Collections.Generic;
using System.Composition;
using System.Globalization;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>
    /// PEFT006: offers the block sizes nearest to the written one that divide the layer (below and above, nearest
    /// first), as the analyzer found them; for a class-level attribute, blocks that divide every target of known shape.
    /// </summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(BoneBlockCodeFix)), Shared]
    public sealed class BoneBlockCodeFix : NodeReplacingCodeFix<ExpressionSyntax>
    {
        /// <summary>The fix, registered for its diagnostic.</summary>
        public BoneBlockCodeFix() : base(DiagnosticIds.BlockDoesNotDivide) { }

        /// <inheritdoc/>
        protected override ExpressionSyntax? FindTarget(SyntaxNode root, Diagnostic diagnostic) =>
            diagnostic.Properties.TryGetValue(DiagnosticIds.BlockCandidatesProperty, out string? candidates) && !string.IsNullOrEmpty(candidates)
                ? root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true) as ExpressionSyntax
                : null;

        /// <inheritdoc/>
        protected override IEnumerable<Replacement> Replacements(ExpressionSyntax target, Diagnostic diagnostic)
        {
            string[] blocks = diagnostic.Properties[DiagnosticIds.BlockCandidatesProperty]!.Split(',');
            for (int i = 0; i < blocks.Length; i++)
            {
                if (!long.TryParse(blocks[i], NumberStyles.None, CultureInfo.InvariantCulture, out long block) || block > int.MaxValue) continue;
                int value = (int)block;
                yield return new Replacement(
                    "Use block " + value.ToString(CultureInfo.InvariantCulture),
                    i == 0 ? "PEFT006.Nearest" : "PEFT006.Other",
                    (written, _) => SyntaxFactory.LiteralExpression(SyntaxKind.NumericLiteralExpression, SyntaxFactory.Literal(value)).WithTriviaFrom(written));
            }
        }
    }
}
