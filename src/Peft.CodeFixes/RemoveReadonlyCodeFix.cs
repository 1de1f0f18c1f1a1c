using System.Collections.Generic;
using System.Composition;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>PEFT003: removes <c>readonly</c> from the adapter field (the property form, without a setter, has no automatic fix).</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(RemoveReadonlyCodeFix)), Shared]
    public sealed class RemoveReadonlyCodeFix : NodeReplacingCodeFix<FieldDeclarationSyntax>
    {
        /// <summary>The fix, registered for its diagnostic.</summary>
        public RemoveReadonlyCodeFix() : base(DiagnosticIds.ReadOnlyMember) { }

        /// <inheritdoc/>
        protected override FieldDeclarationSyntax? FindTarget(SyntaxNode root, Diagnostic diagnostic)
        {
            SyntaxToken token = root.FindToken(diagnostic.Location.SourceSpan.Start);
            return token.IsKind(SyntaxKind.ReadOnlyKeyword) ? token.Parent as FieldDeclarationSyntax : null;
        }

        /// <inheritdoc/>
        protected override IEnumerable<Replacement> Replacements(FieldDeclarationSyntax target, Diagnostic diagnostic)
        {
            yield return new Replacement("Remove readonly", nameof(RemoveReadonlyCodeFix), (field, _) => RemoveReadonly(field));
        }

        private static FieldDeclarationSyntax? RemoveReadonly(FieldDeclarationSyntax field)
        {
            SyntaxTokenList modifiers = field.Modifiers;
            int index = modifiers.IndexOf(SyntaxKind.ReadOnlyKeyword);
            if (index < 0) return null;
            SyntaxToken removed = modifiers[index];
            modifiers = modifiers.RemoveAt(index);

            if (index < modifiers.Count)
            {
                // The next modifier moves into readonly's place and takes its leading trivia.
                return field.WithModifiers(modifiers.Replace(modifiers[index], modifiers[index].WithLeadingTrivia(removed.LeadingTrivia)));
            }

            if (modifiers.Count > 0) return field.WithModifiers(modifiers);

            // readonly was the only modifier: the type now starts the declaration.
            return field.WithModifiers(modifiers)
                .WithDeclaration(field.Declaration.WithType(field.Declaration.Type.WithLeadingTrivia(removed.LeadingTrivia)));
        }
    }
}
