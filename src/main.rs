//! The EL2 kernel binary. On the host this file builds to a stub so `cargo test` works.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ferrovisor runs at EL2 on arm64: build it with `make`, run it with `make run`");
}

#[cfg(target_os = "none")]
mod hyp {
    use ferrovisor::arch::{console, firmware, memory, percpu};
    use log::info;

    #[unsafe(no_mangle)]
    extern "C" fn fv_main(dtb_pa: u64) -> ! {
        percpu::init_this_cpu(0);
        memory::init_heap();
        console::init(console::EARLY_UART as u64);
        console::init_log(log::LevelFilter::Info);
        info!(
            "Ferrovisor {} starting at EL2, device tree at {:#x}",
            env!("CARGO_PKG_VERSION"),
            dtb_pa
        );
        firmware::system_off(firmware::Conduit::Smc);
        loop {}
    }

    #[unsafe(no_mangle)]
    extern "C" fn fv_secondary_main(_index: u64) -> ! {
        loop {}
    }

    #[unsafe(no_mangle)]
    extern "C" fn fv_mmu_on_secondary() {}

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        console::write_fmt(format_args!("\nferrovisor: PANIC: {info}\n"));
        loop {
            ferrovisor::arch::regs::wfe();
        }
    }
}
