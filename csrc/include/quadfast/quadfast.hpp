// quadfast C++ core: everything a simulator needs, header-only, Eigen only.
#pragma once
#include "quadfast/blocking.hpp"
#include "quadfast/rng.hpp"
#include "quadfast/teacher.hpp"
#include "quadfast/stiefel.hpp"
#include "quadfast/euclid.hpp"
