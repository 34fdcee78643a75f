using ResearchFramework.Host.Data;
using TorchSharp;
using TorchSharp.PyBridge;

namespace ResearchFramework.Host.Certification;

/// <summary>Writes tensors as a PyTorch state dict file (<c>torch.save(model.state_dict(), "final.pt")</c>'s format: a zip
/// holding <c>data.pkl</c>, a pickle of the name → tensor dictionary whose tensors are persistent references to the raw
/// little-endian storages <c>data/0</c>, <c>data/1</c>, …), through TorchSharp.PyBridge's pickler. The file is written to a
/// temporary name and renamed, so a crash never leaves a half-written export.</summary>
public static class PyTorchStateDict
{
    /// <summary>Writes <paramref name="tensors"/> (names, dtypes, shapes and bytes as exported) to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyList<SafetensorsTensor> tensors)
    {
        var state = new Dictionary<string, torch.Tensor>();
        try
        {
            foreach (var t in tensors)
            {
                var tensor = torch.empty(t.Shape, dtype: TorchDtype(t.Dtype));
                tensor.bytes = t.Data;
                state.Add(t.Name, tensor);
            }
            var temporary = path + ".tmp";
            using (var stream = File.Create(temporary))
            {
                PyTorchPickler.PickleStateDict(stream, state, leaveOpen: true);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            foreach (var tensor in state.Values) tensor.Dispose();
        }
    }

    /// <summary>Reads a state dict written by <see cref="Write"/> (or by <c>torch.save</c> of a state dict) as name →
    /// tensor (in no particular order: the unpickler returns a hash table); the caller disposes the tensors.</summary>
    public static List<(string Name, torch.Tensor Tensor)> Read(string path)
    {
        var table = PyTorchUnpickler.UnpickleStateDict(path);
        var result = new List<(string, torch.Tensor)>();
        foreach (System.Collections.DictionaryEntry e in table)
            result.Add(((string)e.Key, (torch.Tensor)e.Value!));
        return result;
    }

    /// <summary>The torch dtype of a safetensors dtype name (inverse of <see cref="ModelExport.SafetensorsDtype"/>).</summary>
    public static torch.ScalarType TorchDtype(string dtype) => dtype switch
    {
        "F32" => torch.ScalarType.Float32,
        "F64" => torch.ScalarType.Float64,
        "F16" => torch.ScalarType.Float16,
        "BF16" => torch.ScalarType.BFloat16,
        "I64" => torch.ScalarType.Int64,
        "I32" => torch.ScalarType.Int32,
        "I16" => torch.ScalarType.Int16,
        "I8" => torch.ScalarType.Int8,
        "U8" => torch.ScalarType.Byte,
        "BOOL" => torch.ScalarType.Bool,
        _ => throw new InvalidDataException($"dtype {dtype} has no torch equivalent"),
    };
}
