/* A stand-in for Windows' bcryptprimitives.dll, which Wine 8 lacks: Rust's std asks it for
 * ProcessPrng (its source of random numbers, for HashMap seeds among others). A test fixture
 * for running sipfs.exe under Wine; it never ships. */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
