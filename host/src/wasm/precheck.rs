//! The check a component passes before it is compiled: its size and the counts the pooling
//! allocator and the host will enforce, read with `wasmparser` (the parser wasmtime itself
//! uses) in milliseconds. A compile bomb (say 100k functions, which cranelift would spend tens
//! of seconds and a gigabyte on before the pool refused the result) is refused here, with a
//! sentence naming the limit.

use wasmparser::{Encoding, Parser, Payload};

/// The most a component may declare. The pool's per-module and per-component limits are set
/// from the same numbers (see `StyleRuntime::new`), so what passes here also fits the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Bytes of the component file.
    pub bytes: usize,
    /// Functions defined by one core module.
    pub functions_per_module: u32,
    /// Bytes of function bodies in all core modules (what the compiler works through).
    pub code_bytes: u64,
    /// Globals defined by one core module.
    pub globals_per_module: u32,
    /// Linear memories defined by one core module.
    pub memories_per_module: u32,
    /// Tables defined by one core module.
    pub tables_per_module: u32,
    /// Initial elements of one table.
    pub table_elements: u64,
    /// Core module instantiations in the whole component.
    pub core_instances: u32,
    /// Linear memories in the whole component.
    pub memories: u32,
    /// Tables in the whole component.
    pub tables: u32,
    /// Component instances and component-level functions (lifts, lowers, built-ins).
    pub component_items: u32,
}

/// The defaults leave room over what the interpreted guests need (measured on componentize-py
/// 0.25.1 and componentize-js 0.23.0 components, see docs/benchmarks.md): a Python component
/// has 14 core instantiations (a dynamically linked CPython), 10,625 functions in its largest
/// module, 6.6 MB of code and a table of 5,692 elements; a JavaScript one (SpiderMonkey) 4
/// instantiations, 12,673 functions, 9.2 MB of code and a table of 7,710 elements.
impl Default for ComponentLimits {
    fn default() -> Self {
        ComponentLimits {
            bytes: 64 << 20,
            functions_per_module: 20_000,
            code_bytes: 16 << 20,
            globals_per_module: 10_000,
            memories_per_module: 1,
            tables_per_module: 1,
            table_elements: 20_000,
            core_instances: 32,
            memories: 2,
            tables: 8,
            component_items: 10_000,
        }
    }
}

/// Checks `wasm` against `limits` and a linear-memory cap of `memory_cap` bytes (which bounds
/// each memory's initial size and the data written into memories at start-up).
pub fn check(wasm: &[u8], limits: &ComponentLimits, memory_cap: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        wasm.len() <= limits.bytes,
        "the component is {} bytes; the limit is {} (component size)",
        wasm.len(),
        limits.bytes
    );
    let mut module = 0usize;
    let mut in_module = Vec::new();
    let (mut core_instances, mut memories, mut tables, mut component_items) =
        (0u32, 0u32, 0u32, 0u32);
    let (mut data_bytes, mut code_bytes) = (0u64, 0u64);
    let over = |what: &str, count: u64, limit: u64| {
        anyhow::anyhow!("the component declares {count} {what}; the host allows at most {limit}")
    };
    let per_module = |module: usize, what: &str, count: u32, limit: u32| {
        anyhow::ensure!(
            count <= limit,
            over(
                &format!("{what} in core module {module} ({what} per module)"),
                count.into(),
                limit.into()
            )
        );
        Ok(())
    };
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| anyhow::anyhow!("the component is malformed: {e}"))?;
        let in_core = in_module.last() == Some(&true);
        match payload {
            Payload::Version { encoding, .. } => {
                let core = encoding == Encoding::Module;
                module += usize::from(core);
                in_module.push(core);
            }
            Payload::End(_) => {
                in_module.pop();
            }
            Payload::FunctionSection(section) if in_core => {
                let n = section.count();
                per_module(module, "functions", n, limits.functions_per_module)?;
            }
            Payload::GlobalSection(section) if in_core => {
                let n = section.count();
                per_module(module, "globals", n, limits.globals_per_module)?;
            }
            Payload::MemorySection(section) if in_core => {
                let n = section.count();
                per_module(module, "memories", n, limits.memories_per_module)?;
                memories = memories.saturating_add(n);
                for memory in section {
                    let memory = memory?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let initial = memory.initial.saturating_mul(page);
                    anyhow::ensure!(
                        initial <= memory_cap as u64,
                        "a memory of core module {module} starts at {} MiB; the style's memory \
                         cap is {} MiB",
                        initial >> 20,
                        memory_cap >> 20
                    );
                }
            }
            Payload::TableSection(section) if in_core => {
                let n = section.count();
                per_module(module, "tables", n, limits.tables_per_module)?;
                tables = tables.saturating_add(n);
                for table in section {
                    let initial = table?.ty.initial;
                    if initial > limits.table_elements {
                        return Err(over(
                            &format!(
                                "initial elements in a table of core module {module} (table elements)"
                            ),
                            initial,
                            limits.table_elements,
                        ));
                    }
                }
            }
            Payload::DataSection(section) if in_core => {
                for data in section {
                    data_bytes = data_bytes.saturating_add(data?.data.len() as u64);
                }
                anyhow::ensure!(
                    data_bytes <= memory_cap as u64,
                    "the component's data segments hold {} MiB; the style's memory cap is {} MiB",
                    data_bytes >> 20,
                    memory_cap >> 20
                );
            }
            Payload::CodeSectionStart { size, .. } => {
                code_bytes = code_bytes.saturating_add(size.into());
                if code_bytes > limits.code_bytes {
                    return Err(over(
                        "bytes of function bodies (code size)",
                        code_bytes,
                        limits.code_bytes,
                    ));
                }
            }
            Payload::InstanceSection(section) => {
                for instance in section {
                    // Bags of exports cost nothing; each instantiation takes a pooled instance.
                    if matches!(instance?, wasmparser::Instance::Instantiate { .. }) {
                        core_instances = core_instances.saturating_add(1);
                    }
                }
            }
            Payload::ComponentInstanceSection(section) => {
                component_items = component_items.saturating_add(section.count());
            }
            Payload::ComponentCanonicalSection(section) => {
                component_items = component_items.saturating_add(section.count());
            }
            _ => {}
        }
        for (what, count, limit) in [
            (
                "core module instantiations (core instances)",
                core_instances,
                limits.core_instances,
            ),
            ("memories in all", memories, limits.memories),
            ("tables in all", tables, limits.tables),
            (
                "component instances and functions",
                component_items,
                limits.component_items,
            ),
        ] {
            if count > limit {
                return Err(over(what, count.into(), limit.into()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(core_module: &str) -> Vec<u8> {
        wat::parse_str(format!("(component (core module {core_module}))")).unwrap()
    }

    fn refusal(wasm: &[u8]) -> String {
        check(wasm, &ComponentLimits::default(), 256 << 20)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_small_component_passes() {
        let wasm = component("(memory 17) (table 10 funcref) (func) (data (i32.const 0) \"hi\")");
        check(&wasm, &ComponentLimits::default(), 256 << 20).unwrap();
    }

    #[test]
    fn each_limit_is_named_when_passed() {
        let funcs = "(func)".repeat(20_001);
        assert!(
            refusal(&component(&funcs))
                .contains("20001 functions in core module 1 (functions per module)")
        );
        let instantiations = "(core instance (instantiate $m))".repeat(33);
        let instances = wat::parse_str(format!("(component (core module $m) {instantiations})"));
        assert!(
            refusal(&instances.unwrap()).contains("33 core module instantiations (core instances)")
        );
        let bags = "(core instance (export \"x\" (func $f)))".repeat(20);
        let bags = format!(
            "(component (core module $m (func (export \"f\"))) (core instance $i (instantiate $m)) (alias core export $i \"f\" (core func $f)) {bags})"
        );
        check(
            &wat::parse_str(bags).unwrap(),
            &ComponentLimits::default(),
            256 << 20,
        )
        .expect("bags of exports are no instances");
        let memories = component("(memory 1) (memory 1)");
        assert!(refusal(&memories).contains("(memories per module)"));
        let big_memory = component("(memory 8192)");
        assert!(
            refusal(&big_memory).contains("starts at 512 MiB; the style's memory cap is 256 MiB")
        );
        let table = component("(table 20001 funcref)");
        assert!(refusal(&table).contains("(table elements)"));
        let tables = component("(table 1 funcref) (table 1 funcref)");
        assert!(refusal(&tables).contains("(tables per module)"));
        let limits = ComponentLimits {
            bytes: 10,
            ..ComponentLimits::default()
        };
        assert!(
            check(&memories, &limits, 1 << 30)
                .unwrap_err()
                .to_string()
                .contains("(component size)")
        );
    }

    #[test]
    fn garbage_is_refused_without_a_panic() {
        assert!(refusal(b"\0asm\x0d\0\x01\0\xff\xff").contains("malformed"));
        assert!(refusal(b"not wasm").contains("malformed"));
    }
}
