using System.Collections.Generic;
using System.Composition;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>
    /// PEFT017: gives the reported member's adapter its own name, the member's (<c>Name = "mlp"</c>), replacing a
    /// Name it already has. A class-level attribute reaching the member through Targets has no automatic fix: renaming
    /// it would rename the adapter on every field it targets.
    /// </summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(NameAdapterCodeFix)), Shared]
    public sealed class NameAdapterCodeFix : NodeReplacingCodeFix<AttributeSyntax>
    {
        private const string NameArgument = "Name";

        /// <summary>The fix, registered for its diagnostic.</summary>
        public NameAdapterCodeFix() : base(DiagnosticIds.SharedConfigMismatch) { }

        /// <inheritdoc/>
        protected override AttributeSyntax? FindTarget(SyntaxNode root, Diagnostic diagnostic)
        {
            if (!diagnostic.Properties.TryGetValue(DiagnosticIds.MemberNameProperty, out string? member) || string.IsNullOrEmpty(member)) return null;
            AttributeSyntax? attribute = root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true)
                .AncestorsAndSelf().OfType<AttributeSyntax>().FirstOrDefault();
            return attribute?.Parent?.Parent is FieldDeclarationSyntax or PropertyDeclarationSyntax ? attribute : null;
        }

        /// <inheritdoc/>
        protected override IEnumerable<Replacement> Replacements(AttributeSyntax target, Diagnostic diagnostic)
        {
            string name = diagnostic.Properties[DiagnosticIds.MemberNameProperty]!;
            yield return new Replacement($"Name the adapter \"{name}\"", nameof(NameAdapterCodeFix), (attribute, _) => WithName(attribute, name));
        }

        private static AttributeSyntax WithName(AttributeSyntax attribute, string name)
        {
            LiteralExpressionSyntax literal = SyntaxFactory.LiteralExpression(SyntaxKind.StringLiteralExpression, SyntaxFactory.Literal(name));
            AttributeArgumentSyntax? existing = attribute.ArgumentList?.Arguments
                .FirstOrDefault(a => a.NameEquals?.Name.Identifier.ValueText == NameArgument);
            if (existing is not null) return attribute.ReplaceNode(existing.Expression, literal.WithTriviaFrom(existing.Expression));

            AttributeArgumentSyntax argument = SyntaxFactory.AttributeArgument(
                SyntaxFactory.NameEquals(
                    SyntaxFactory.IdentifierName(NameArgument).WithTrailingTrivia(SyntaxFactory.Space),
                    SyntaxFactory.Token(SyntaxKind.EqualsToken).WithTrailingTrivia(SyntaxFactory.Space)),
                null, literal);
            AttributeArgumentListSyntax list = attribute.ArgumentList ?? SyntaxFactory.AttributeArgumentList();
            SeparatedSyntaxList<AttributeArgumentSyntax> arguments = list.Arguments;
            arguments = arguments.Count == 0
                ? arguments.Add(argument)
                : SyntaxFactory.SeparatedList(arguments.Append(argument),
                    arguments.GetSeparators().Append(SyntaxFactory.Token(SyntaxKind.CommaToken).WithTrailingTrivia(SyntaxFactory.Space)));
            return attribute.WithArgumentList(list.WithArguments(arguments));
        }
    }
}
