namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// What one fused forward saved for backward, counted by the function itself: the input (the caller's tensor,
    /// shared with the frozen layer, never a copy), parameters (never copies), and activations of its own.
    /// </summary>
    /// <param name="InputBytes">Bytes of the input tensor kept (0 when backward does not read it).</param>
    /// <param name="ParameterBytes">Bytes of parameters kept (references, not copies).</param>
    /// <param name="ActivationBytes">Bytes of tensors the function made and kept.</param>
    /// <param name="OutputCacheReleased">Whether TorchSharp's per-output zero-gradient buffer was released.</param>
    internal sealed record SaveReport(long InputBytes, long ParameterBytes, long ActivationBytes, bool OutputCacheReleased);
}
