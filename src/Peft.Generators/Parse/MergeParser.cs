using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Peft.Generators.Model;

namespace Peft.Generators.Parse
{
    /// <summary>
    /// Reads <c>[MergeWith]</c> applications into <see cref="MergeModel"/>s. An invalid one (unknown adapter names,
    /// weights that do not fit, a density outside (0, 1], a name that makes no method) is left out: the analyzers
    /// report it, and the generated code must still compile.
    /// </summary>
    internal static class MergeParser
    {
        /// <summary>The adapter name the attribute's <c>Name</c> defaults to.</summary>
        public const string DefaultName = "merged";

        private const string BaseAdapterName = "__base__";

        /// <summary>One member of <c>Peft.MergeMethod</c>: its name and what the generated documentation calls it.</summary>
        internal sealed class MergeMethodInfo
        {
            public MergeMethodInfo(string name, string description)
            {
                Name = name;
                Description = description;
            }

            public string Name { get; }

            public string Description { get; }
        }

        /// <summary>The members of <c>Peft.MergeMethod</c> the generator emits, indexed by their value; the analyzers name them from here too.</summary>
        public static readonly MergeMethodInfo[] Methods =
        {
            new MergeMethodInfo("Linear", "exactly Σ wᵢ·ΔWᵢ (task arithmetic, kept low-rank by concatenation)"),
            new MergeMethodInfo("Cat", "exactly Σ wᵢ·ΔWᵢ by concatenation"),
            new MergeMethodInfo("Svd", "Σ wᵢ·ΔWᵢ re-factorised by truncated SVD"),
            new MergeMethodInfo("Ties", "TIES (trim, elect sign, agreeing mean) re-factorised by truncated SVD"),
            new MergeMethodInfo("DareLinear", "DARE (drop and rescale) then Σ wᵢ·ΔWᵢ, re-factorised by truncated SVD"),
            new MergeMethodInfo("DareTies", "DARE (drop and rescale) then TIES, re-factorised by truncated SVD"),
            new MergeMethodInfo("MagnitudePrune", "magnitude pruning then Σ wᵢ·ΔWᵢ, re-factorised by truncated SVD"),
            new MergeMethodInfo("ModelStock", "Model Stock (t·mean ΔWᵢ, t from the angle between the deltas) re-factorised by truncated SVD"),
            new MergeMethodInfo("Tsv", "TSV-Merge (each task's top singular triplets, the stacked singular vectors orthogonalised) re-factorised by truncated SVD"),
            new MergeMethodInfo("IsoC", "Iso-C (the sum's singular values all set to their mean) re-factorised by truncated SVD"),
            new MergeMethodInfo("IsoCts", "Iso-CTS (common and task-specific singular directions, orthogonalised, isotropic) re-factorised by truncated SVD"),
            new MergeMethodInfo("Widen", "WIDEN (each ΔWᵢ scaled per input column by its magnitude and direction significance against the base weight)"),
            new MergeMethodInfo("LoraLego", "LoRA-LEGO (k-means over the sources' rank-1 units, centroids dual-reweighted; rank = Rank)"),
        };

        /// <summary>The members of <c>Peft.MergeSpace</c>, indexed by their value.</summary>
        public static readonly string[] Spaces = { "Full", "Core" };

        /// <summary>The methods whose full-space result over LoRA deltas is full-rank (a truncated SVD then loses what they make).</summary>
        public static readonly string[] FullRankInFullSpace = { "IsoC", "IsoCts" };

        private static MergeMethodInfo? FindMethod(string name) => Methods.FirstOrDefault(m => m.Name == name);

        /// <summary>The <c>Merge{Name}()</c> methods of one class, first occurrence of each method name kept.</summary>
        /// <param name="type">The class.</param>
        /// <param name="classMerges">The <c>[MergeWith]</c> applications on the class itself (<see cref="PeftClassView.ClassMerges"/>).</param>
        /// <param name="isPeftModel">Whether it is a <c>[PeftModel]</c> root (whose class-level merge covers every layer of the model).</param>
        /// <param name="sites">The class's own adapter sites.</param>
        /// <param name="memberMerges">The <c>[MergeWith]</c> applications on members, with the member's component name.</param>
        /// <param name="reserved">Names the method must not take (generated members, the type's own members).</param>
        public static List<MergeModel> Parse(
            INamedTypeSymbol type, IReadOnlyList<AttributeData> classMerges, bool isPeftModel, IReadOnlyList<AdapterSiteModel> sites,
            IReadOnlyList<(AttributeData Attribute, string ComponentName)> memberMerges, ISet<string> reserved)
        {
            var applications = new List<(AttributeData Attribute, string? ComponentName)>();
            foreach (AttributeData attribute in classMerges) applications.Add((attribute, null));

            foreach (var (attribute, component) in memberMerges) applications.Add((attribute, component));

            var merges = new List<MergeModel>();
            var taken = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (attribute, component) in applications)
            {
                MergeModel? merge = ParseOne(attribute, component, isPeftModel, sites);
                if (merge is null || reserved.Contains(merge.MethodName) || merge.MethodName == type.Name || !taken.Add(merge.MethodName)) continue;
                merges.Add(merge);
            }

            return merges;
        }

        /// <summary>The method names the <c>[MergeWith]</c> attributes of <paramref name="type"/> and its members would give (for <c>new</c>).</summary>
        public static IEnumerable<string> DeclaredMethodNames(INamedTypeSymbol type)
        {
            if (PeftClassView.Create(type) is not { } view) yield break;
            foreach (AttributeData attribute in view.ClassMerges.Concat(view.MemberMerges.Select(static m => m.Attribute)))
            {
                string name = DefaultName;
                foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
                {
                    if (argument.Key == KnownAttributes.NameArgument && argument.Value.Value is string s) name = s;
                }

                if (MethodNameFor(name) is { } methodName) yield return methodName;
            }
        }

        /// <summary><c>Merge</c> + the name in PascalCase (<c>math_code</c> → <c>MergeMathCode</c>), or null when that is no identifier.</summary>
        public static string? MethodNameFor(string name)
        {
            var text = new StringBuilder("Merge");
            bool upper = true;
            foreach (char c in name)
            {
                if (!char.IsLetterOrDigit(c))
                {
                    upper = true;
                    continue;
                }

                text.Append(upper ? char.ToUpperInvariant(c) : c);
                upper = false;
            }

            string result = text.ToString();
            return result.Length > "Merge".Length && SyntaxFacts.IsValidIdentifier(result) && SyntaxFacts.GetKeywordKind(result) == SyntaxKind.None ? result : null;
        }

        private static MergeModel? ParseOne(AttributeData attribute, string? component, bool isPeftModel, IReadOnlyList<AdapterSiteModel> sites)
        {
            if (attribute.AttributeConstructor is null || attribute.ConstructorArguments.Length != 1) return null;
            TypedConstant adaptersArgument = attribute.ConstructorArguments[0];
            if (adaptersArgument.Kind != TypedConstantKind.Array || adaptersArgument.IsNull) return null;
            var adapters = new List<string>();
            foreach (TypedConstant value in adaptersArgument.Values)
            {
                if (value.Value is not string { Length: > 0 } adapter || adapters.Contains(adapter)) return null;
                adapters.Add(adapter);
            }

            if (adapters.Count == 0) return null;

            string name = DefaultName;
            string method = "Linear";
            string? weights = null;
            var weightValues = new List<double>();
            string? density = null;
            double densityValue = 1;
            int rank = 0;
            int seed = 0;
            string space = "Full";
            string? commonFraction = null;
            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                TypedConstant value = argument.Value;
                switch (argument.Key)
                {
                    case "Name":
                        if (value.Value is not string { Length: > 0 } n) return null;
                        name = n;
                        break;
                    case "Method":
                        if (value.Kind != TypedConstantKind.Enum || value.Type is not INamedTypeSymbol enumType) return null;
                        string? member = enumType.GetMembers().OfType<IFieldSymbol>()
                            .FirstOrDefault(f => f.HasConstantValue && Equals(f.ConstantValue, value.Value))?.Name;
                        if (member is null || FindMethod(member) is null) return null;
                        method = member;
                        break;
                    case "Weights":
                        if (value.IsNull) break;
                        if (value.Kind != TypedConstantKind.Array) return null;
                        foreach (TypedConstant w in value.Values)
                        {
                            if (w.Value is not double d || double.IsNaN(d) || double.IsInfinity(d)) return null;
                            weightValues.Add(d);
                        }

                        weights = "new double[] { " + string.Join(", ", weightValues.Select(w => ConstantFormatter.FormatPrimitive(w))) + " }";
                        break;
                    case "Density":
                        if (value.Value is not double dv || !(dv > 0 && dv <= 1)) return null;
                        densityValue = dv;
                        density = ConstantFormatter.FormatPrimitive(dv);
                        break;
                    case "Rank":
                        if (value.Value is not int r || r < 0) return null;
                        rank = r;
                        break;
                    case "Seed":
                        if (value.Value is not int sd) return null;
                        seed = sd;
                        break;
                    case "Space":
                        if (value.Value is not int sp || sp < 0 || sp >= Spaces.Length) return null;
                        space = Spaces[sp];
                        break;
                    case "CommonFraction":
                        if (value.Value is not double cf || !(cf > 0 && cf <= 1)) return null;
                        commonFraction = ConstantFormatter.FormatPrimitive(cf);
                        break;
                    default:
                        return null;
                }
            }

            if (name == BaseAdapterName || adapters.Contains(name)) return null;
            if (space == "Core" && MergeMessages.NotInCoreSpace(method) is not null) return null;
            if (method == "LoraLego" && rank == 0) return null;
            if (weights is not null && weightValues.Count != adapters.Count) return null;
            string? methodName = MethodNameFor(name);
            if (methodName is null) return null;

            // Where the merge applies, and whether the compiler can see the adapters there.
            var members = new List<string>();
            if (component is not null)
            {
                var names = new HashSet<string>(sites.Where(s => s.ComponentName == component).Select(s => s.AdapterName), StringComparer.Ordinal);
                if (!adapters.All(names.Contains)) return null;
                members.Add(component);
            }
            else if (!isPeftModel)
            {
                foreach (var group in sites.GroupBy(s => s.ComponentName))
                {
                    var names = new HashSet<string>(group.Select(s => s.AdapterName), StringComparer.Ordinal);
                    if (adapters.All(names.Contains)) members.Add(group.Key);
                }

                if (members.Count == 0) return null;
            }

            string scope = component is not null ? "on <c>" + Escape(component) + "</c>"
                : isPeftModel ? "on every adapter layer of the model that holds them all"
                : "on this class's adapter layers that hold them all";
            var details = new List<string>();
            if (weights is not null && method != "ModelStock") details.Add("weights " + string.Join(", ", weightValues.Select(w => w.ToString("R", CultureInfo.InvariantCulture))));
            if (density is not null && method is "Ties" or "DareLinear" or "DareTies" or "MagnitudePrune")
                details.Add("density " + densityValue.ToString("R", CultureInfo.InvariantCulture));
            if (rank > 0) details.Add((method == "LoraLego" ? "clusters " : "rank ") + rank.ToString(CultureInfo.InvariantCulture));
            if (method is "DareLinear" or "DareTies" or "LoraLego") details.Add("seed " + seed.ToString(CultureInfo.InvariantCulture));
            if (method == "IsoCts") details.Add("common fraction " + (commonFraction ?? "0.8"));
            if (space == "Core") details.Add("in core space");
            string summary = "Creates the adapter <c>" + Escape(name) + "</c> from " + string.Join(", ", adapters.Select(a => "<c>" + Escape(a) + "</c>"))
                + (details.Count > 0 ? " (" + string.Join("; ", details) + ")" : string.Empty) + " " + scope + ", as <c>[MergeWith]</c> declares: "
                + (space == "Core" ? FindMethod(method)!.Description.Replace(" re-factorised by truncated SVD", string.Empty) + ", on the core matrices of the sources' stacked factors (exact, rank ≤ the sources' ranks summed)" : FindMethod(method)!.Description)
                + ". The result is a LoRA adapter (scaling 1), inactive until selected.";

            return new MergeModel(
                MethodName: methodName,
                Name: name,
                Adapters: adapters.ToEquatableArray(),
                Method: method,
                Weights: weights,
                Density: density,
                Rank: rank,
                Seed: seed,
                Space: space,
                CommonFraction: commonFraction,
                Member: component,
                Members: members.ToEquatableArray(),
                Summary: summary);
        }

        /// <summary>Text safe inside a one-line XML doc comment: markup escaped, line breaks and control characters made spaces.</summary>
        private static string Escape(string text)
        {
            var escaped = new StringBuilder(text.Length);
            foreach (char c in text)
            {
                switch (c)
                {
                    case '&': escaped.Append("&amp;"); break;
                    case '<': escaped.Append("&lt;"); break;
                    case '>': escaped.Append("&gt;"); break;
                    default: escaped.Append(char.IsControl(c) || c == '\u2028' || c == '\u2029' ? ' ' : c); break;
                }
            }

            return escaped.ToString();
        }
    }
}
