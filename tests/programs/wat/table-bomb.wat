;; An attack guest in WAT (Rust has no `table.grow`): its driver grows a
;; table without end. tests/artifacts/build.rs wraps this core module into a
;; component of the `fabric:core/app` world.
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 1024))

  ;; A bump allocator: enough for the host to pass `main` its arguments.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (block $fits
      (br_if $fits
        (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (drop (memory.grow
        (i32.add
          (i32.div_u
            (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
            (i32.const 65536))
          (i32.const 1)))))
    (local.get $p))

  ;; The driver: grow the table by 1000 elements at a time, forever.
  (func (export "fabric:core/guest@0.1.0#main") (param i32 i32) (result i32)
    (loop $grow
      (drop (table.grow $t (ref.null func) (i32.const 1000)))
      (br $grow))
    (unreachable))

  (func (export "fabric:core/guest@0.1.0#dispatch") (param i32 i32 i32 i32) (result i32)
    (unreachable))
  (func (export "fabric:core/guest@0.1.0#actor-new") (param i32 i32 i32 i32) (result i32)
    (unreachable))
  (func (export "fabric:core/guest@0.1.0#actor-call") (param i32 i32 i32 i32) (result i32)
    (unreachable))
  (func (export "fabric:core/guest@0.1.0#actor-run") (result i32)
    (unreachable)))
