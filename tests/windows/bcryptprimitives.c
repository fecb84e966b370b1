/* A stand-in for Windows 10's bcryptprimitives.dll, for running runllama.dll under wine 8.
 *
 * Rust's std (1.78+) imports ProcessPrng from bcryptprimitives.dll for its random numbers
 * (HashMap seeds); wine 8 does not ship that DLL. This one exports only ProcessPrng and fills
 * the buffer with RtlGenRandom (advapi32's SystemFunction036), which wine implements.
 * Placed beside the .exe files by tests/windows/run.sh; never shipped.
 */
#include <windows.h>

/* advapi32's RtlGenRandom, declared here (ntsecapi.h only gives it under a macro name). */
__declspec(dllimport) BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* BOOL ProcessPrng(PBYTE pbData, SIZE_T cbData): always succeeds on Windows; so here, unless
 * RtlGenRandom fails. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000u ? 0x10000000u : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
