using System;
using System.Globalization;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Peft.Generators.Parse
{
    /// <summary>Writes attribute argument values as deterministic C# expressions.</summary>
    internal static class ConstantFormatter
    {
        /// <summary>The fully qualified display format used for every type the generated code names.</summary>
        public static readonly SymbolDisplayFormat GlobalFormat = SymbolDisplayFormat.FullyQualifiedFormat;

        /// <summary>Formats a constant, or returns null when it cannot be written (errors, unknown kinds).</summary>
        public static string? TryFormat(TypedConstant constant)
        {
            switch (constant.Kind)
            {
                case TypedConstantKind.Primitive:
                    return constant.IsNull ? "null" : FormatPrimitive(constant.Value);
                case TypedConstantKind.Enum:
                    return constant.Type is INamedTypeSymbol enumType ? FormatEnum(enumType, constant.Value) : null;
                case TypedConstantKind.Type:
                    return constant.IsNull ? "null"
                        : constant.Value is ITypeSymbol type && type.TypeKind != TypeKind.Error ? "typeof(" + type.ToDisplayString(GlobalFormat) + ")" : null;
                case TypedConstantKind.Array:
                    return FormatArray(constant);
                default:
                    return null;
            }
        }

        /// <summary>Formats a boxed primitive: invariant culture, round-trippable doubles with a <c>d</c> suffix.</summary>
        public static string? FormatPrimitive(object? value)
        {
            switch (value)
            {
                case null: return "null";
                case bool b: return b ? "true" : "false";
                case string s: return SymbolDisplay.FormatLiteral(s, quote: true);
                case char c: return SymbolDisplay.FormatLiteral(c, quote: true);
                case int i: return i.ToString(CultureInfo.InvariantCulture);
                case long l: return l.ToString(CultureInfo.InvariantCulture) + "L";
                case uint ui: return ui.ToString(CultureInfo.InvariantCulture) + "U";
                case ulong ul: return ul.ToString(CultureInfo.InvariantCulture) + "UL";
                case short sh: return "(short)" + Parenthesize(sh.ToString(CultureInfo.InvariantCulture));
                case ushort us: return "(ushort)" + us.ToString(CultureInfo.InvariantCulture);
                case byte by: return "(byte)" + by.ToString(CultureInfo.InvariantCulture);
                case sbyte sb: return "(sbyte)" + Parenthesize(sb.ToString(CultureInfo.InvariantCulture));
                case double d: return FormatDouble(d);
                case float f: return FormatSingle(f);
                case decimal m: return m.ToString(CultureInfo.InvariantCulture) + "m";
                default: return null;
            }
        }

        private static string Parenthesize(string number) => number.StartsWith("-", StringComparison.Ordinal) ? "(" + number + ")" : number;

        private static string FormatDouble(double d)
        {
            if (double.IsNaN(d)) return "double.NaN";
            if (double.IsPositiveInfinity(d)) return "double.PositiveInfinity";
            if (double.IsNegativeInfinity(d)) return "double.NegativeInfinity";
            return d.ToString("R", CultureInfo.InvariantCulture) + "d";
        }

        private static string FormatSingle(float f)
        {
            if (float.IsNaN(f)) return "float.NaN";
            if (float.IsPositiveInfinity(f)) return "float.PositiveInfinity";
            if (float.IsNegativeInfinity(f)) return "float.NegativeInfinity";
            return f.ToString("R", CultureInfo.InvariantCulture) + "f";
        }

        private static string? FormatEnum(INamedTypeSymbol enumType, object? value)
        {
            if (enumType.TypeKind != TypeKind.Enum || value is null) return null;
            string typeName = enumType.ToDisplayString(GlobalFormat);
            foreach (ISymbol member in enumType.GetMembers())
            {
                if (member is IFieldSymbol { HasConstantValue: true } field && Equals(field.ConstantValue, value))
                {
                    return typeName + "." + EscapeIdentifier(field.Name);
                }
            }

            string? number = FormatPrimitive(value);
            if (number is null) return null;
            return "(" + typeName + ")(" + number + ")";
        }

        private static string? FormatArray(TypedConstant constant)
        {
            if (constant.IsNull) return "null";
            if (constant.Type is not IArrayTypeSymbol arrayType || arrayType.ElementType.TypeKind == TypeKind.Error) return null;
            var text = new StringBuilder();
            text.Append("new ").Append(arrayType.ElementType.ToDisplayString(GlobalFormat)).Append("[] { ");
            bool first = true;
            foreach (TypedConstant element in constant.Values)
            {
                string? item = TryFormat(element);
                if (item is null) return null;
                if (!first) text.Append(", ");
                text.Append(item);
                first = false;
            }

            text.Append(first ? "}" : " }");
            return text.ToString();
        }

        /// <summary>Prefixes <c>@</c> where the name is a C# keyword.</summary>
        public static string EscapeIdentifier(string name) =>
            SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None ? "@" + name : name;
    }
}
