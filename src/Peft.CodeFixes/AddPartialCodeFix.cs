using System.Collections.Generic;
using System.Composition;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>PEFT001: adds <c>partial</c> to the type declaration, just before its keyword.</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(AddPartialCodeFix)), Shared]
    public sealed class AddPartialCodeFix : NodeReplacingCodeFix<TypeDeclarationSyntax>
    {
        /// <summary>The fix, registered for its diagnostic.</summary>
        public AddPartialCodeFix() : base(DiagnosticIds.NotPartial) { }

        /// <inheritdoc/>
        protected override TypeDeclarationSyntax? FindTarget(SyntaxNode root, Diagnostic diagnostic) =>
            root.FindToken(diagnostic.Location.SourceSpan.Start).Parent?.FirstAncestorOrSelf<TypeDeclarationSyntax>() is { } declaration
            && !declaration.Modifiers.Any(SyntaxKind.PartialKeyword)
                ? declaration
                : null;

        /// <inheritdoc/>
        protected override IEnumerable<Replacement> Replacements(TypeDeclarationSyntax target, Diagnostic diagnostic)
        {
            yield return new Replacement("Add partial", nameof(AddPartialCodeFix), (declaration, _) => AddPartial(declaration));
        }

        private static TypeDeclarationSyntax AddPartial(TypeDeclarationSyntax declaration)
        {
            SyntaxToken partial = SyntaxFactory.Token(SyntaxKind.PartialKeyword).WithTrailingTrivia(SyntaxFactory.Space);
            if (declaration.Modifiers.Count > 0) return declaration.WithModifiers(declaration.Modifiers.Add(partial));

            // partial takes over the keyword's leading trivia (indentation, comments), as it now starts the line.
            SyntaxToken keyword = declaration.Keyword;
            return declaration
                .WithKeyword(keyword.WithLeadingTrivia())
                .WithModifiers(SyntaxFactory.TokenList(partial.WithLeadingTrivia(keyword.LeadingTrivia)));
        }
    }
}
