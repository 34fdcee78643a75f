/// Networks of SPEC §5–§6 as TorchSharp modules whose layers carry stable names, so that the
/// feature map h(x; ω) of SPEC §1 can be chosen by layer name ("taps").
namespace ResearchFramework.Algorithm

open System
open TorchSharp

/// Activation function of a network. tanh, softplus and sigmoid are strictly increasing, real
/// analytic and non-polynomial (SPEC §5, Lemma 2); relu is not analytic (SPEC §2).
type Activation =
    | Tanh = 0
    | Softplus = 1
    | Sigmoid = 2
    | Relu = 3

/// Floating-point precision of the network's parameters and activations.
type Precision =
    | Float32 = 0
    | Float64 = 1

/// The one record that names an architecture (SPEC §5–§6).
/// Name: "mlp" | "lenet5" | "resnet18". InputShape: one example's shape, e.g. [|64|] or [|1;28;28|].
/// Widths: MLP hidden widths, narrow ones first and the wide layer last; LeNet-5 optionally
/// [|c1; c2; f1; f2|] (default 6, 16, 120, 84); ignored by the ResNet.
/// WidthMultiplier k: ResNet stage widths 64k, 128k, 256k, 512k (ignored otherwise).
/// Taps: layer names whose outputs form h; empty = the architecture's default (see `Networks.defaultTaps`).
type ArchitectureSpec =
    { Name: string
      InputShape: int[]
      Classes: int
      Widths: int[]
      Activation: Activation
      WidthMultiplier: float
      Precision: Precision
      Taps: string[] }

    /// A fully-connected net: input → narrow widths → one wide layer → classes (SPEC §5).
    static member Mlp(inputDim: int, widths: int[], classes: int, activation: Activation, precision: Precision) =
        { Name = "mlp"; InputShape = [| inputDim |]; Classes = classes; Widths = widths; Activation = activation
          WidthMultiplier = 1.0; Precision = precision; Taps = [||] }

/// Module constructors and the factory from `ArchitectureSpec`.
module Networks =

    type Net = torch.nn.Module<torch.Tensor, torch.Tensor>

    /// The dtype of a precision.
    let dtypeOf (p: Precision) = if p = Precision.Float64 then torch.float64 else torch.float32

    /// A fresh activation module.
    let activationModule (a: Activation) : Net =
        match a with
        | Activation.Tanh -> torch.nn.Tanh()
        | Activation.Softplus -> torch.nn.Softplus(1.0, 20.0)
        | Activation.Sigmoid -> torch.nn.Sigmoid()
        | Activation.Relu -> torch.nn.ReLU(false)
        | other -> invalidArg "activation" (sprintf "unknown activation %O" other)

    /// MLP x ↦ W_{H+1} σ(W_H … σ(W_1 x + b_1) … + b_H) + b_{H+1} on flattened inputs (SPEC §5).
    /// Submodules: hidden0, act0, …, hidden{H−1}, act{H−1}, output; the default tap is act{H−1},
    /// the last (wide) hidden layer's activation output.
    type Mlp(inputDim: int, widths: int[], classes: int, activation: Activation, precision: Precision) as this =
        inherit torch.nn.Module<torch.Tensor, torch.Tensor>("mlp")
        let dtype = dtypeOf precision
        let layers = ResizeArray<Net>()
        do
            if widths.Length = 0 then invalidArg "widths" "an MLP needs at least one hidden layer"
            let mutable fanIn = inputDim
            widths |> Array.iteri (fun i w ->
                let lin = torch.nn.Linear(int64 fanIn, int64 w, true, dtype = dtype)
                let act = activationModule activation
                this.register_module(sprintf "hidden%d" i, lin)
                this.register_module(sprintf "act%d" i, act)
                layers.Add lin
                layers.Add act
                fanIn <- w)
            let out = torch.nn.Linear(int64 fanIn, int64 classes, true, dtype = dtype)
            this.register_module("output", out)
            layers.Add out

        override _.forward(x: torch.Tensor) =
            let mutable h = if x.dim () > 2L then x.flatten(1L) else x
            for layer in layers do
                h <- layer.call h
            h

    /// LeNet-5 style: conv1(5×5, pad 2) → act1 → pool1 → conv2(5×5) → act2 → pool2 → flatten →
    /// fc1 → act3 → fc2 → act4 → output. Default tap: act4 (the f2 features before the classifier).
    type LeNet5(inputShape: int[], widths: int[], classes: int, activation: Activation, precision: Precision) as this =
        inherit torch.nn.Module<torch.Tensor, torch.Tensor>("lenet5")
        let dtype = dtypeOf precision
        let c1, c2, f1, f2 = if widths.Length = 4 then widths.[0], widths.[1], widths.[2], widths.[3] else 6, 16, 120, 84
        let channels, height, width =
            match inputShape with
            | [| c; h; w |] -> c, h, w
            | [| h; w |] -> 1, h, w
            | _ -> invalidArg "inputShape" (sprintf "LeNet-5 needs [|C; H; W|], got %A" inputShape)
        let spatial s = ((s / 2) - 4) / 2
        do if spatial height < 1 || spatial width < 1 then invalidArg "inputShape" (sprintf "input %A is too small for LeNet-5 (needs H, W ≥ 12)" inputShape)
        let sequence : (string * Net) list =
            [ "conv1", torch.nn.Conv2d(int64 channels, int64 c1, 5L, padding = 2L, dtype = dtype)
              "act1", activationModule activation
              "pool1", torch.nn.AvgPool2d(2L)
              "conv2", torch.nn.Conv2d(int64 c1, int64 c2, 5L, dtype = dtype)
              "act2", activationModule activation
              "pool2", torch.nn.AvgPool2d(2L)
              "flatten", torch.nn.Flatten(1L, -1L)
              "fc1", torch.nn.Linear(int64 (c2 * spatial height * spatial width), int64 f1, true, dtype = dtype)
              "act3", activationModule activation
              "fc2", torch.nn.Linear(int64 f1, int64 f2, true, dtype = dtype)
              "act4", activationModule activation
              "output", torch.nn.Linear(int64 f2, int64 classes, true, dtype = dtype) ]
        do for (name, m) in sequence do this.register_module(name, m)

        override _.forward(x: torch.Tensor) =
            let x = if x.dim () = 3L then x.unsqueeze(1L) else x
            let mutable h = x
            for (_, m) in sequence do
                h <- m.call h
            h

    /// Pre-activation basic block (He et al. 2016, "Identity mappings"): out = conv2(act(bn2(conv1(act(bn1 x))))) + shortcut,
    /// where the shortcut is the identity, or a 1×1 strided conv of act(bn1 x) when the shape changes.
    type PreActBlock(inC: int, outC: int, stride: int, activation: Activation, dtype: torch.ScalarType) as this =
        inherit torch.nn.Module<torch.Tensor, torch.Tensor>("preact_block")
        let bn1 = torch.nn.BatchNorm2d(int64 inC, dtype = dtype)
        let act1 = activationModule activation
        let conv1 = torch.nn.Conv2d(int64 inC, int64 outC, 3L, stride = int64 stride, padding = 1L, bias = false, dtype = dtype)
        let bn2 = torch.nn.BatchNorm2d(int64 outC, dtype = dtype)
        let act2 = activationModule activation
        let conv2 = torch.nn.Conv2d(int64 outC, int64 outC, 3L, padding = 1L, bias = false, dtype = dtype)
        let shortcut : Net option =
            if stride <> 1 || inC <> outC then
                Some (torch.nn.Conv2d(int64 inC, int64 outC, 1L, stride = int64 stride, bias = false, dtype = dtype) :> Net)
            else None
        do
            this.register_module("bn1", bn1)
            this.register_module("act1", act1)
            this.register_module("conv1", conv1)
            this.register_module("bn2", bn2)
            this.register_module("act2", act2)
            this.register_module("conv2", conv2)
            shortcut |> Option.iter (fun s -> this.register_module("shortcut", s))

        override _.forward(x: torch.Tensor) =
            // no dispose scope here: tap hooks keep references to intermediate outputs
            let pre = act1.call (bn1.call x)
            let skip = match shortcut with Some s -> s.call pre | None -> x
            let out = conv2.call (act2.call (bn2.call (conv1.call pre)))
            out.add(skip, ResearchFramework.MathCore.TorchConversions.one)

    /// Pre-activation ResNet-18 with a CIFAR stem (3×3 conv, stride 1, no max-pool) and batch norm:
    /// stem → layer1..layer4 (two blocks each, widths 64k·(1,2,4,8), strides 1,2,2,2) → bn → act →
    /// global average pool → fc. Default taps: the four stage outputs layer1..layer4 (SPEC §6).
    type PreActResNet18(inChannels: int, classes: int, k: float, activation: Activation, precision: Precision) as this =
        inherit torch.nn.Module<torch.Tensor, torch.Tensor>("resnet18")
        let dtype = dtypeOf precision
        let widths = [| 64; 128; 256; 512 |] |> Array.map (fun w -> max 1 (int (Math.Round(float w * k))))
        let stem = torch.nn.Conv2d(int64 inChannels, int64 widths.[0], 3L, padding = 1L, bias = false, dtype = dtype)
        let stages =
            let mutable c = widths.[0]
            [| for s in 0 .. 3 ->
                 let stride = if s = 0 then 1 else 2
                 let b0 = new PreActBlock(c, widths.[s], stride, activation, dtype)
                 let b1 = new PreActBlock(widths.[s], widths.[s], 1, activation, dtype)
                 c <- widths.[s]
                 torch.nn.Sequential([| struct ("0", b0 :> Net); struct ("1", b1 :> Net) |]) |]
        let bn = torch.nn.BatchNorm2d(int64 widths.[3], dtype = dtype)
        let act = activationModule activation
        let pool = torch.nn.AdaptiveAvgPool2d(1L)
        let flatten = torch.nn.Flatten(1L, -1L)
        let fc = torch.nn.Linear(int64 widths.[3], int64 classes, true, dtype = dtype)
        do
            this.register_module("stem", stem)
            stages |> Array.iteri (fun i s -> this.register_module(sprintf "layer%d" (i + 1), s))
            this.register_module("bn", bn)
            this.register_module("act", act)
            this.register_module("pool", pool)
            this.register_module("flatten", flatten)
            this.register_module("fc", fc)

        /// Channel widths of the four stages.
        member _.StageWidths = Array.copy widths

        override _.forward(x: torch.Tensor) =
            // no dispose scope here: tap hooks keep references to the stage outputs
            let mutable h = stem.call x
            for s in stages do
                h <- s.call h
            fc.call (flatten.call (pool.call (act.call (bn.call h))))

    /// Default taps (SPEC §1, §6): MLP → the last hidden activation; LeNet-5 → act4; ResNet → layer1..layer4.
    let defaultTaps (spec: ArchitectureSpec) : string list =
        match spec.Name.ToLowerInvariant() with
        | "mlp" -> [ sprintf "act%d" (spec.Widths.Length - 1) ]
        | "lenet5" -> [ "act4" ]
        | "resnet18" -> [ "layer1"; "layer2"; "layer3"; "layer4" ]
        | other -> invalidArg "spec" (sprintf "unknown architecture '%s'" other)

    /// The taps of a spec: its own list when given, the default otherwise.
    let taps (spec: ArchitectureSpec) : string list =
        if isNull spec.Taps || spec.Taps.Length = 0 then defaultTaps spec else List.ofArray spec.Taps

    /// A stable one-line description, used as the certificate's Architecture field.
    let describe (spec: ArchitectureSpec) : string =
        sprintf "%s input=%s classes=%d widths=[%s] activation=%O k=%g %O"
            spec.Name (String.Join("x", spec.InputShape)) spec.Classes
            (String.Join(",", (if isNull spec.Widths then [||] else spec.Widths))) spec.Activation spec.WidthMultiplier spec.Precision

    /// Builds the network of a spec, initialised from the global torch generator seeded with `seed`
    /// (the same seed gives bit-identical parameters).
    let build (spec: ArchitectureSpec) (seed: int64) : Net =
        torch.random.manual_seed seed |> ignore
        let inputDim = spec.InputShape |> Array.fold (*) 1
        match spec.Name.ToLowerInvariant() with
        | "mlp" -> new Mlp(inputDim, spec.Widths, spec.Classes, spec.Activation, spec.Precision) :> Net
        | "lenet5" -> new LeNet5(spec.InputShape, (if isNull spec.Widths then [||] else spec.Widths), spec.Classes, spec.Activation, spec.Precision) :> Net
        | "resnet18" ->
            let channels = if spec.InputShape.Length = 3 then spec.InputShape.[0] else 1
            new PreActResNet18(channels, spec.Classes, spec.WidthMultiplier, spec.Activation, spec.Precision) :> Net
        | other -> invalidArg "spec" (sprintf "unknown architecture '%s': expected mlp, lenet5 or resnet18" other)

    /// The convolution cases (MathCore.KernelCheck) a network of `spec` calls: a training step at each of
    /// `trainingBatches` and an evaluation-mode forward at each of `evaluationBatches`. An MLP has none
    /// (no network is built). The global torch generator is saved and restored around the build, so the
    /// check leaves a run's random stream as it found it.
    let convolutionCases (spec: ArchitectureSpec) (trainingBatches: int list) (evaluationBatches: int list)
        : ResearchFramework.MathCore.KernelCheck.ConvolutionCase list =
        if spec.Name.ToLowerInvariant() = "mlp" then []
        else
            use state = torch.random.get_rng_state ()
            try
                use model = build spec 0L
                // Shapes are found at batch 1 (a cheap forward) and then given each requested batch size.
                use x = torch.zeros(Array.append [| 1L |] (spec.InputShape |> Array.map int64), dtype = dtypeOf spec.Precision)
                let atBatch (training: bool) (batches: int list) =
                    if List.isEmpty batches then []
                    else
                        let one = ResearchFramework.MathCore.KernelCheck.casesOf model x training
                        [ for b in batches do for c in one -> { c with Batch = int64 b } ]
                atBatch true trainingBatches @ atBatch false evaluationBatches |> List.distinct
            finally
                torch.random.set_rng_state state

    let private memoryEstimateChecked (spec: ArchitectureSpec) : int64 * int64 =
        let inline (*) (a: int64) (b: int64) = Checked.(*) a b
        let inline (+) (a: int64) (b: int64) = Checked.(+) a b
        let dims = spec.InputShape |> Array.map int64
        match spec.Name.ToLowerInvariant() with
        | "mlp" ->
            let layers = Array.concat [ dims |> Array.reduce (*) |> Array.singleton; spec.Widths |> Array.map int64; [| int64 spec.Classes |] ]
            let parameters = Array.pairwise layers |> Array.sumBy (fun (a, b) -> (a + 1L) * b)
            parameters, 2L * (Array.sum layers)
        | "lenet5" ->
            let c, h, w = (if dims.Length = 3 then dims.[0], dims.[1], dims.[2] else 1L, dims.[0], dims.[1])
            let ws = if isNull spec.Widths || spec.Widths.Length <> 4 then [| 6L; 16L; 120L; 84L |] else spec.Widths |> Array.map int64
            let c1, c2, f1, f2 = ws.[0], ws.[1], ws.[2], ws.[3]
            let flat = c2 * ((h / 2L - 4L) / 2L) * ((w / 2L - 4L) / 2L)
            let parameters = (c * 25L + 1L) * c1 + (c1 * 25L + 1L) * c2 + (flat + 1L) * f1 + (f1 + 1L) * f2 + (f2 + 1L) * int64 spec.Classes
            parameters, 3L * (c1 * h * w + c2 * h * w / 4L) + 2L * (flat + f1 + f2)
        | "resnet18" ->
            let c, h, w = (if dims.Length = 3 then dims.[0], dims.[1], dims.[2] else 1L, dims.[0], dims.[1])
            let widths = [| 64.0; 128.0; 256.0; 512.0 |] |> Array.map (fun x -> max 1L (int64 (Math.Round(Operators.( * ) x spec.WidthMultiplier))))
            let mutable parameters = c * 9L * widths.[0]
            let mutable activations = 2L * widths.[0] * h * w
            let mutable inC = widths.[0]
            let mutable hw = h * w
            for s in 0 .. 3 do
                let outC = widths.[s]
                if s > 0 then hw <- max 1L (hw / 4L)
                parameters <- parameters + 9L * inC * outC + 9L * outC * outC + (if inC <> outC || s > 0 then inC * outC else 0L)
                parameters <- parameters + 2L * 9L * outC * outC
                activations <- activations + 2L * 10L * outC * hw
                inC <- outC
            parameters + (widths.[3] + 1L) * int64 spec.Classes, activations
        | other -> invalidArg "spec" (sprintf "unknown architecture '%s': expected mlp, lenet5 or resnet18" other)

    /// An analytic estimate, without building the network (a width of 10⁸ must be refused, not allocated):
    /// (parameter count, activation elements one sample keeps for the backward pass). Exact for the
    /// parameters of the MLP and LeNet-5; for the ResNet-18 the parameters are exact up to batch-norm and
    /// rounding, and the activations count about ten tensors of each block's output size (pre-activation
    /// block: two BN, two activations, two convolutions, the sum) — an order-of-magnitude guard, not a profile.
    /// Sizes beyond 64 bits saturate at Int64.MaxValue (always refused).
    let memoryEstimate (spec: ArchitectureSpec) : int64 * int64 =
        try memoryEstimateChecked spec
        with :? OverflowException -> Int64.MaxValue, Int64.MaxValue
