/// The recipe as a library (`TwoPhase`): a network defined here (not one of the repository's), a
/// base optimiser that is none of the five built-in rules, and a hand-written loop.
module ResearchFramework.Properties.AlgorithmTests.TwoPhaseTests

open System
open System.IO
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Algorithm
open ResearchFramework.Properties


/// n inputs and targets from a seed (float64).
let private problem (seed: int) (n: int) =
    use g = new torch.Generator(uint64 (seed &&& 0x7fffffff) + 3UL, torch.CPU)
    torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = g), torch.randn([| int64 n; 2L |], dtype = torch.float64, generator = g)

/// Rows [t·b mod n, …) of a tensor: the loop's own batching (cyclic, no permutation).
let private batchOf (b: int) (n: int) (t: int) (x: torch.Tensor) =
    let start = (t * b) % n
    x.narrow(0L, int64 start, int64 (min b (n - start)))

let private mse (z: torch.Tensor) (y: torch.Tensor) = torch.nn.functional.mse_loss(z, y)

let private recipeConfig tau =
    { RecipeConfig.Default with SwitchIteration = tau; DampingPower = 1.0; CheckPeriod = 2; GuardKappa = 0.5 }

/// The setup of the user's network with RMSprop on the body (none of the five built-in rules).
let private setupFor (model: torch.nn.Module<torch.Tensor, torch.Tensor>) (x: torch.Tensor) (rule: BodyRule) (tau: int) (batch: int) =
    let cert = CertificationInputs.Create(x, null, int x.shape.[0])
    TwoPhase.Setup(recipeConfig tau, model, [ "hidden" ], rule, cert, LossKind.Squared, batch, 2)

/// The user's loop: T steps of the recipe at a constant η; returns the final state and the
/// model fingerprint after every step.
let private runLoop (setup: RecipeSetup) (state: RecipeState) (x: torch.Tensor) (y: torch.Tensor) (batch: int) (eta: float) (until: int) =
    let n = int x.shape.[0]
    let mutable s = state
    let prints = ResizeArray<string>()
    while s.Iteration < until do
        let t = s.Iteration
        let step = TwoPhase.Step(setup, s, eta, fun forward -> mse (forward.Invoke(batchOf batch n t x)) (batchOf batch n t y))
        s <- step.State
        prints.Add(Fingerprint.ofModule setup.Model)
    s, prints.ToArray()

[<Tests>]
let tests =
    testSequenced <| testList "Algorithm.TwoPhase" [
        testPropertyWithConfig (Seeds.config 3) "a user's network and optimiser (RMSprop) in a hand-written loop: Phase I is the plain loop bit for bit; then a certified switch and α_t-damped body steps" <| fun (seed: int) ->
            let n, batch, tau, T = 12, 4, 5, 11
            let x, y = problem seed n
            use xd = x
            use yd = y
            // the plain loop: RMSprop on the whole model, no recipe
            use plain = TestSupport.tanhNetwork seed
            use plainOpt = (torch.optim.RMSProp(plain.parameters (), 0.01) :> torch.optim.Optimizer)
            let plainPrints =
                [| for t in 0 .. tau - 1 do
                     plainOpt.zero_grad ()
                     do
                         use scope = torch.NewDisposeScope()
                         let loss = mse (plain.call (batchOf batch n t xd)) (batchOf batch n t yd)
                         loss.backward ()
                     plainOpt.step () |> ignore
                     yield Fingerprint.ofModule plain |]
            use model = TestSupport.tanhNetwork seed
            use opt = (torch.optim.RMSProp(model.parameters (), 0.01) :> torch.optim.Optimizer)
            let obs = RecordingObserver()
            let setup = (setupFor model xd (BodyRule.Of opt) tau batch).WithObserver(obs)
            let final, prints = runLoop setup (TwoPhase.Init setup) xd yd batch 0.01 T
            try
                Expect.sequenceEqual prints.[0 .. tau - 1] plainPrints "Phase I = the plain RMSprop loop, bit for bit"
                Expect.equal final.Phase Phase.PhaseTwo (sprintf "EC certified at τ (n = 12 ≤ 40 tanh features): %A" (final.Certificates |> Array.map (fun c -> c.Reason)))
                Expect.isNotNull final.Readout "V exists after the switch"
                let phaseTwo = obs.Steps |> Seq.filter (fun r -> r.Phase = Phase.PhaseTwo) |> Seq.toArray
                Expect.equal phaseTwo.Length (T - tau) "Phase II steps"
                for r in phaseTwo do
                    Expect.floatClose Accuracy.veryHigh r.Alpha (1.0 / float (r.Iteration - tau + 1)) "α_t = (t − τ + 1)^(−p), p = 1"
                    Expect.isTrue (r.ReadoutLearningRate <= 0.01) "η_V ≤ η_t"
                    Expect.isTrue (r.BodyMovement > 0.0) "the body moves (damped)"
                Expect.isTrue (obs.Steps |> Seq.exists (fun r -> not (isNull r.GuardRoute))) "the guard ran"
            finally TwoPhase.Dispose(setup, final)

        testPropertyWithConfig (Seeds.config 3) "a step function (sign-SGD, not an optimiser): the damped body step is ω_t + α_t·(A(ω_t) − ω_t)" <| fun (seed: int) ->
            let n, batch, tau, T = 10, 10, 2, 6
            let x, y = problem seed n
            use xd = x
            use yd = y
            use model = TestSupport.tanhNetwork seed
            let ps = model.parameters () |> Seq.toArray
            let mutable before : torch.Tensor[] = [||]
            let mutable undamped : torch.Tensor[] = [||]
            let signSgd () =
                use _ = torch.no_grad ()
                before <- ps |> Array.map (fun p -> p.detach().clone().DetachFromDisposeScope())
                for p in ps do p.sub_(p.grad.sign().mul(scalar 1e-3)) |> ignore
                undamped <- ps |> Array.map (fun p -> p.detach().clone().DetachFromDisposeScope())
            let setup = setupFor model xd (BodyRule.Of(Action signSgd)) tau batch
            let mutable s = TwoPhase.Init setup
            let mutable checkedSteps = 0
            try
                while s.Iteration < T do
                    let step = TwoPhase.Step(setup, s, 0.05, fun forward -> mse (forward.Invoke xd) yd)
                    s <- step.State
                    // a step after which the guard restored the body, or a frozen one (α = 0), is not A's step
                    if step.Record.Phase = Phase.PhaseTwo && step.Record.Alpha > 0.0 && not s.GuardTripped then
                        let alpha = step.Record.Alpha
                        for i in 0 .. ps.Length - 1 do
                            use expected = before.[i].add(undamped.[i].sub(before.[i]).mul(scalar alpha))
                            Expect.isTrue (ps.[i].detach().allclose(expected, 1e-12, 1e-15)) (sprintf "parameter %d at t = %d: ω_t + α(A(ω_t) − ω_t)" i step.Record.Iteration)
                        if alpha < 1.0 then checkedSteps <- checkedSteps + 1
                    elif step.Record.Phase <> Phase.PhaseTwo then
                        for i in 0 .. ps.Length - 1 do
                            Expect.isTrue (ps.[i].detach().allclose(undamped.[i], 0.0, 0.0)) "Phase I: A's step as is"
                Expect.isTrue (checkedSteps > 0) "damped (α_t < 1) Phase II steps were checked"
            finally TwoPhase.Dispose(setup, s)

        test "the recipe's state saved and loaded in a user's loop continues bit for bit; a different recipe's file is refused" {
            let seed, n, batch, tau, T = 11, 12, 4, 3, 10
            let x, y = problem seed n
            use xd = x
            use yd = y
            use model = TestSupport.tanhNetwork seed
            use opt = (torch.optim.RMSProp(model.parameters (), 0.01) :> torch.optim.Optimizer)
            let setup = setupFor model xd (BodyRule.Of opt) tau batch
            let full, prints = runLoop setup (TwoPhase.Init setup) xd yd batch 0.01 T
            TwoPhase.Dispose(setup, full)
            use dir = new HostTests.HostTestSupport.TempDir()
            use model2 = TestSupport.tanhNetwork seed
            use opt2 = (torch.optim.RMSProp(model2.parameters (), 0.01) :> torch.optim.Optimizer)
            let setup2 = setupFor model2 xd (BodyRule.Of opt2) tau batch
            let half, _ = runLoop setup2 (TwoPhase.Init setup2) xd yd batch 0.01 6
            let statePath = Path.Combine(dir.Path, "recipe.state")
            TwoPhase.Save(setup2, half, statePath)
            model2.save(Path.Combine(dir.Path, "model.bin")) |> ignore
            do
                use w = new BinaryWriter(File.Create(Path.Combine(dir.Path, "opt.bin")))
                Optimizers.saveState opt2 w
            TwoPhase.Dispose(setup2, half)
            // a fresh process's view: new model and optimiser, states loaded from files
            use model3 = TestSupport.tanhNetwork 999
            model3.load(Path.Combine(dir.Path, "model.bin")) |> ignore
            use opt3 = (torch.optim.RMSProp(model3.parameters (), 0.01) :> torch.optim.Optimizer)
            do
                use r = new BinaryReader(File.OpenRead(Path.Combine(dir.Path, "opt.bin")))
                Optimizers.loadState opt3 r
            let setup3 = setupFor model3 xd (BodyRule.Of opt3) tau batch
            let loaded = TwoPhase.Load(setup3, statePath)
            Expect.equal (loaded.Iteration, loaded.Phase) (6, Phase.PhaseTwo) "loaded after the switch"
            let final, rest = runLoop setup3 loaded xd yd batch 0.01 T
            Expect.sequenceEqual rest prints.[6..] "the resumed loop is the uninterrupted one, bit for bit"
            TwoPhase.Dispose(setup3, final)
            let other = setupFor model3 xd (BodyRule.Of opt3) (tau + 1) batch
            let e = Expect.throwsC (fun () -> TwoPhase.Load(other, statePath) |> ignore) id
            Expect.stringContains e.Message statePath "names the file"
        }

        test "bad setups are refused with the reason" {
            let x, _ = problem 1 6
            use xd = x
            use model = TestSupport.tanhNetwork 1
            use opt = torch.optim.SGD(model.parameters (), 0.1) :> torch.optim.Optimizer
            let setup = setupFor model xd (BodyRule.Of opt) 2 3
            Expect.throwsT<ArgumentException> (fun () -> TwoPhase.Init { setup with Recipe = { setup.Recipe with GuardKappa = 1.5 } } |> ignore) "κ ∉ (0, 1)"
            Expect.throwsT<ArgumentException> (fun () -> TwoPhase.Init { setup with Recipe = { setup.Recipe with Readout = ReadoutChoice.OutputLayer } } |> ignore) "OutputLayer without the layer"
            let e = Expect.throwsC (fun () -> setupFor model xd (BodyRule.Of opt) 2 3 |> fun s -> TwoPhase.Setup(s.Recipe, model, [ "nope" ], s.BodyRule, s.Certification, LossKind.Squared, 3, 2) |> ignore) id
            Expect.stringContains e.Message "nope" "names the missing tap"
            Expect.throwsT<ArgumentException> (fun () -> CertificationInputs.Create(xd, null, 3) |> ignore) "training set smaller than the certification set"
        }

        test "C# face: the library's entry points take no FSharpFunc, FSharpList or FSharpOption" {
            let fsharpy (t: Type) =
                let rec bad (t: Type) =
                    let name = (if t.IsGenericType then t.GetGenericTypeDefinition() else t).FullName
                    (not (isNull name) && (name.StartsWith "Microsoft.FSharp.Core.FSharpFunc" || name.StartsWith "Microsoft.FSharp.Collections.FSharpList"
                                            || name.StartsWith "Microsoft.FSharp.Core.FSharpOption"))
                    || (t.IsGenericType && t.GetGenericArguments() |> Array.exists bad)
                    || (t.HasElementType && bad (t.GetElementType()))
                bad t
            let entryTypes =
                [ typeof<TwoPhase>; typeof<BodyRule>; typeof<CertificationInputs>; typeof<RecipeSetup>; typeof<RecipeState>; typeof<RecipeStep>
                  typeof<Trainer>; typeof<TwoPhaseTrainer>; typeof<ModelCertificate> ]
            let offenders =
                [ for t in entryTypes do
                    for m in t.GetMethods(Reflection.BindingFlags.Public ||| Reflection.BindingFlags.Static ||| Reflection.BindingFlags.Instance ||| Reflection.BindingFlags.DeclaredOnly) do
                        if fsharpy m.ReturnType || (m.GetParameters() |> Array.exists (fun p -> fsharpy p.ParameterType)) then
                            yield sprintf "%s.%s" t.Name m.Name
                    for c in t.GetConstructors() do
                        if c.GetParameters() |> Array.exists (fun p -> fsharpy p.ParameterType) then yield sprintf "%s..ctor" t.Name ]
            // the built-in trainer's F# constructor takes `RecipeConfig option` (its C# doors are `Trainer.Run/RunBase/Resume`)
            Expect.sequenceEqual offenders [ "TwoPhaseTrainer..ctor" ] "only the trainer's F# constructor"
        }
        test "C# face: every public member of the library's entry types has an XML doc comment (IntelliSense in C#)" {
            let docs =
                [ "Algorithm.xml"; "Math.Core.xml" ]
                |> List.collect (fun f ->
                    let doc = Xml.XmlDocument()
                    doc.Load(Path.Combine(AppContext.BaseDirectory, f))
                    [ for m in doc.SelectNodes "//member" -> (m :?> Xml.XmlElement).GetAttribute "name" ])
                |> set
            let documented (prefix: string) = docs |> Set.exists (fun d -> d = prefix || d.StartsWith(prefix + "(") || d.StartsWith(prefix + "``"))
            let generated = set [ "Equals"; "GetHashCode"; "CompareTo"; "ToString"; "get_Tag"; "Tag" ]
            let undocumented =
                [ for t in [ typeof<TwoPhase>; typeof<BodyRule>; typeof<CertificationInputs>; typeof<RecipeSetup>; typeof<RecipeState>
                             typeof<RecipeStep>; typeof<PreconditionedReadout>; typeof<Trainer>; typeof<ModelCertificate>; typeof<RecipeConfig> ] do
                    let name = t.FullName.Replace('+', '.')
                    if not (documented ("T:" + name)) then yield "T:" + name
                    let flags = Reflection.BindingFlags.Public ||| Reflection.BindingFlags.Static ||| Reflection.BindingFlags.Instance ||| Reflection.BindingFlags.DeclaredOnly
                    for p in t.GetProperties flags do
                        if not (generated.Contains p.Name) && not (p.Name.StartsWith "Is") && not (documented (sprintf "P:%s.%s" name p.Name)) then
                            yield sprintf "P:%s.%s" name p.Name
                    for m in t.GetMethods flags do
                        if not m.IsSpecialName && not (generated.Contains m.Name) && not (m.Name.StartsWith "New")
                           && isNull (m.GetCustomAttributes(typeof<Runtime.CompilerServices.CompilerGeneratedAttribute>, false) |> Array.tryHead |> Option.toObj)
                           && not (documented (sprintf "M:%s.%s" name m.Name)) then
                            yield sprintf "M:%s.%s" name m.Name ]
            Expect.isEmpty undocumented (sprintf "documented; missing: %s" (String.Join(", ", undocumented)))
        }

        test "the examples train a network of their own with the recipe in a hand-written loop: C# (examples/TrainYourModel) and F# script (dotnet fsi examples/train-your-model.fsx)" {
            let root = TestSupport.repositoryRoot ()
            let exe = Path.Combine(root, "examples", "TrainYourModel", "bin", TestSupport.buildConfiguration (), TestSupport.targetFolder (), "TrainYourModel")
            Expect.isTrue (File.Exists exe) (exe + " is built with the solution")
            let code, out, err = TestSupport.runProcess exe [] null [] 120000
            let out = out + err
            Expect.equal code 0 out
            for expected in [ "EC at initialisation: Certified"; "phase: PhaseOne -> PhaseTwo at t = 150"; "guarantee claimed" ] do
                Expect.stringContains out expected "C# example"
            // the script loads the libraries from rf's build output (Release), as the README says
            if TestSupport.buildConfiguration () = "Release" then
                let code, out, err = TestSupport.runProcess "dotnet" [ "fsi"; Path.Combine(root, "examples", "train-your-model.fsx") ] null [] 300000
                let out = out + err
                Expect.equal code 0 out
                for expected in [ "EC at initialisation: Certified"; "switch at t = 100: PhaseTwo"; "guarantee claimed" ] do
                    Expect.stringContains out expected "F# script"
        }
    ]
