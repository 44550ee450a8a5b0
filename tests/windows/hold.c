/* Holds a file open without sharing, as Excel holds an open workbook: another process's open
 * of it fails with ERROR_SHARING_VIOLATION until this one closes it. Prints "held" once the
 * file is open, then waits for its standard input to close. A test fixture for the Wine tests
 * (tests/tests/windows.rs); it never ships. */
#include <windows.h>
#include <stdio.h>

int wmain(int argc, wchar_t **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: hold FILE\n");
        return 2;
    }
    HANDLE h = CreateFileW(argv[1], GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "hold: cannot open the file: error %lu\n", GetLastError());
        return 1;
    }
    printf("held\n");
    fflush(stdout);
    char buf[64];
    while (fgets(buf, sizeof buf, stdin)) {
    }
    CloseHandle(h);
    return 0;
}
